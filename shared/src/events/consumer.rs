//! Durable JetStream consumers with idempotent, transactional handlers and a dead-letter table.
//!
//! For each message: decode it; record its event id in `processed_events` and apply the
//! handler's effect in one transaction; commit; then acknowledge. A redelivery of an event that
//! was already applied finds its id recorded and is only acknowledged. A message that can never
//! succeed is parked in `dead_letters` with the reason and acknowledged, so it never blocks the
//! messages behind it. A passing failure (database down) is negatively acknowledged with a
//! growing delay, and JetStream redelivers it.
//!
//! The durable consumer itself belongs to the stream's owner, who creates it (`opd-nats
//! stream`): the service only binds to it, and uses its `ack_wait` as it finds it. An operator's
//! retry of a dead letter ([`retry`]) handles it from the database, through the same inbox and
//! handler in one transaction, without publishing anything.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::events::{Event, EventMeta};
use crate::http::health::{ConsumerState, Consumers};
use crate::infra::Infra;
use crate::infra::config::ConsumerSettings;
use crate::infra::metrics::Metrics;
use crate::infra::nats::StreamNeed;
use crate::infra::retry::{Backoff, sleep_or_cancel};
use crate::infra::telemetry::mask_values;

/// How a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Will never succeed (the event contradicts what we know): park it.
    #[error("{0}")]
    Permanent(String),
    /// May succeed later (the database is down, or an error nobody foresaw): retry with
    /// backoff, and park it only after `consumer.max_deliveries` deliveries.
    #[error("{0}")]
    Transient(String),
}

impl From<sqlx::Error> for HandlerError {
    /// Only errors in the data itself are permanent. An unknown error is retried: parking it
    /// at once would take the patient out of the flow for what may be a passing fault.
    fn from(error: sqlx::Error) -> Self {
        if crate::infra::db::is_data_error(&error) {
            Self::Permanent(error.to_string())
        } else {
            Self::Transient(error.to_string())
        }
    }
}

/// The effect of one kind of event on a service's database.
pub trait EventHandler: Send + Sync + 'static {
    type Event: Event;

    /// Applies `event` inside the caller's transaction. Must not commit.
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: Self::Event,
        meta: &'a EventMeta,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;

    /// Applies the new events of one batch, in the order they arrived, inside the caller's
    /// transaction. Must not commit. By default one [`EventHandler::handle`] per event, each in
    /// its event's span. A handler whose effect is a row per event can override it to write them
    /// all in one statement: one round trip to the database instead of one per event. An error
    /// need not say which event caused it: a batch that fails is handled again one event at a
    /// time, and that error is the one a dead letter records.
    fn handle_all<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: Vec<Received<Self::Event>>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a {
        async move {
            for Received { meta, event, span } in events {
                self.handle(&mut *tx, event, &meta).instrument(span).await?;
            }
            Ok(())
        }
    }
}

/// An event a consumer received and decoded, with its metadata and the span its handling runs
/// in (a child of the trace that caused it).
#[derive(Debug)]
pub struct Received<E> {
    pub meta: EventMeta,
    pub event: E,
    pub span: tracing::Span,
}

/// Runs a durable pull consumer named `durable` over `H::Event::SUBJECT` until cancelled. Every
/// replica of a service uses the same durable name, so each event is handled by one of them.
pub struct Consumer<H> {
    durable: String,
    pool: PgPool,
    jetstream: jetstream::Context,
    /// The stream's name (`nats.stream`).
    stream: String,
    settings: ConsumerSettings,
    handler: H,
    states: Consumers,
    metrics: Arc<Metrics>,
    /// The live durable's `ack_wait`, in milliseconds, as last bound: a batch in hand is
    /// reported in progress every third of it.
    ack_wait_ms: AtomicU64,
}

/// `ack_wait` until the durable has been bound: JetStream's default.
const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its effect is committed and it is acknowledged.
    Applied,
    /// It had been applied before; acknowledged again, nothing changed.
    Duplicate,
    /// It can never succeed: stored in `dead_letters`, with the reason, and acknowledged.
    Parked(String),
    /// It failed for a passing reason: JetStream redelivers it after a delay.
    Retry(String),
    /// It carries no JetStream metadata (not a stream message); ignored.
    Ignored,
}

impl Outcome {
    /// The outcome as `opd_consumer_messages_total` labels it.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Parked(_) => "parked",
            Self::Retry(_) => "retried",
            Self::Ignored => "ignored",
        }
    }
}

impl<H: EventHandler> Consumer<H> {
    pub fn new(durable: &str, infra: &Infra, handler: H) -> Self {
        Self {
            durable: durable.to_owned(),
            pool: infra.pool.clone(),
            jetstream: infra.jetstream.clone(),
            stream: infra.settings.nats.stream.clone(),
            settings: infra.settings.consumer.clone(),
            handler,
            states: infra.consumers.clone(),
            metrics: infra.metrics.clone(),
            ack_wait_ms: AtomicU64::new(millis(DEFAULT_ACK_WAIT)),
        }
    }

    /// Handles what is waiting now, up to `max` messages, and returns what became of each. It
    /// waits up to `wait` for the first one. [`Consumer::run`] does this for ever; tests call it
    /// to drive the consumer step by step.
    pub async fn step(&self, max: usize, wait: Duration) -> anyhow::Result<Vec<Outcome>> {
        let consumer = self.bind().await?;
        let mut messages = consumer
            .fetch()
            .max_messages(max)
            .expires(wait)
            .messages()
            .await?;
        let mut batch = Vec::new();
        while let Some(message) = messages.next().await {
            batch.push(message.map_err(|error| anyhow::anyhow!(error))?);
        }
        Ok(self.process_batch(batch).await)
    }

    #[tracing::instrument(name = "consumer", skip_all, fields(durable = %self.durable))]
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::from_settings(self.settings.retry);
        while !shutdown.is_cancelled() {
            self.states.set(&self.durable, ConsumerState::Binding);
            let mut messages = match self.subscribe().await {
                Ok(messages) => {
                    self.states.set(&self.durable, ConsumerState::Consuming);
                    backoff.reset();
                    tracing::info!(subject = H::Event::SUBJECT, "consuming");
                    messages
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot bind consumer; retrying");
                    sleep_or_cancel(delay, &shutdown).await;
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => break,
                    next = messages.next() => next,
                };
                let failure = match next {
                    Some(Ok(first)) => {
                        // Whatever else has arrived already is handled with it, in one
                        // transaction.
                        let mut batch = vec![first];
                        let failure =
                            take_ready(&mut messages, &mut batch, self.settings.batch_size);
                        self.process_batch(batch).await;
                        failure
                    }
                    Some(Err(error)) => Some(error),
                    None => break,
                };
                if let Some(error) = failure {
                    // Missed heartbeats, a deleted consumer, a lost connection: bind again.
                    self.states.set(&self.durable, ConsumerState::Binding);
                    tracing::warn!(%error, "consumer stream failed; binding again");
                    sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                    break;
                }
            }
        }
        tracing::info!("consumer stopped");
    }

    async fn bind(&self) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
        let need = StreamNeed::InboxRetention(self.settings.inbox_retention);
        let consumer = bind_durable(
            &self.jetstream,
            &self.stream,
            need,
            &self.durable,
            &[H::Event::SUBJECT],
            &self.states,
        )
        .await?;
        self.ack_wait_ms.store(
            millis(consumer.cached_info().config.ack_wait),
            Ordering::Relaxed,
        );
        Ok(consumer)
    }

    async fn subscribe(&self) -> anyhow::Result<pull::Stream> {
        pull_messages(&self.bind().await?, self.settings.batch_size).await
    }

    /// Handles `batch` in one transaction: each event's id goes into the inbox and, the first
    /// time, its effect is applied; one commit, then every message is acknowledged. A message
    /// that cannot be decoded, and the whole batch if any handler fails, are handled one at a
    /// time instead, so that one bad message never holds back or parks the others.
    async fn process_batch(&self, batch: Vec<jetstream::Message>) -> Vec<Outcome> {
        // While the batch is handled (a slow database can make that take longer than
        // `ack_wait`), tell JetStream every third of `ack_wait` that each message is still in
        // hand, so that it is not redelivered to another replica meanwhile.
        let replies: Vec<async_nats::Subject> = batch
            .iter()
            .filter_map(|message| message.message.reply.clone())
            .collect();
        let ack_wait = Duration::from_millis(self.ack_wait_ms.load(Ordering::Relaxed));
        let period = (ack_wait / 3).max(Duration::from_millis(100));
        let started = std::time::Instant::now();
        // Only the event time, for the hop metric: handling decodes the rest.
        let event_times: Vec<Option<DateTime<Utc>>> = batch
            .iter()
            .map(|message| {
                let time = message
                    .headers
                    .as_ref()?
                    .get(crate::events::headers::TIME)?;
                DateTime::parse_from_rfc3339(time.as_str())
                    .ok()
                    .map(|time| time.with_timezone(&Utc))
            })
            .collect();
        let redelivered = batch
            .iter()
            .filter(|message| message.info().is_ok_and(|info| info.delivered > 1))
            .count();
        let outcomes = tokio::select! {
            outcomes = self.handle_batch(batch) => outcomes,
            never = keep_in_progress(self.jetstream.client(), replies, period) => match never {},
        };
        // The hop is measured for the events applied now.
        let handled: Vec<(&'static str, Option<DateTime<Utc>>)> = outcomes
            .iter()
            .zip(event_times)
            .map(|(outcome, time)| {
                (
                    outcome.label(),
                    time.filter(|_| *outcome == Outcome::Applied),
                )
            })
            .collect();
        self.metrics
            .batch_consumed(&self.durable, &handled, redelivered, started.elapsed());
        outcomes
    }

    async fn handle_batch(&self, batch: Vec<jetstream::Message>) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let (positions, decoded): (Vec<usize>, Vec<Received<H::Event>>) = batch
            .iter()
            .enumerate()
            .filter_map(|(i, message)| {
                let sequence = message.info().ok()?.stream_sequence;
                let (meta, event) = decode::<H::Event>(message).ok()?;
                let span = event_span(&self.durable, &meta);
                span.record("stream_sequence", sequence);
                Some((i, Received { meta, event, span }))
            })
            .unzip();
        if decoded.len() > 1 {
            match self.apply(decoded).await {
                Ok(first_times) => {
                    for (position, first_time) in positions.into_iter().zip(first_times) {
                        if let Err(error) = batch[position].ack().await {
                            // Committed: a redelivery is recognised and only acknowledged.
                            tracing::warn!(%error, "acknowledgement not sent");
                        }
                        outcomes[position] = Some(if first_time {
                            Outcome::Applied
                        } else {
                            Outcome::Duplicate
                        });
                    }
                    tracing::debug!(events = outcomes.len(), "batch handled");
                }
                Err(error) => {
                    tracing::info!(%error, "batch failed; handling its messages one by one");
                }
            }
        }
        let mut result = Vec::with_capacity(batch.len());
        for (message, outcome) in batch.into_iter().zip(outcomes) {
            result.push(match outcome {
                Some(outcome) => outcome,
                None => self.process(message).await,
            });
        }
        result
    }

    /// Events take effect ([`apply_in`]) in a transaction of their own.
    async fn apply(&self, events: Vec<Received<H::Event>>) -> Result<Vec<bool>, HandlerError> {
        let mut tx = self.pool.begin().await?;
        let first_times = apply_in(&mut tx, &self.durable, &self.handler, events).await?;
        tx.commit().await?;
        Ok(first_times)
    }

    async fn process(&self, message: jetstream::Message) -> Outcome {
        let (stream_sequence, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered),
            Err(error) => {
                tracing::warn!(%error, "message without JetStream metadata; ignored");
                return Outcome::Ignored;
            }
        };
        let outcome = match decode::<H::Event>(&message) {
            Ok((meta, event)) => {
                let span = event_span(&self.durable, &meta);
                span.record("stream_sequence", stream_sequence);
                match self.apply(vec![Received { meta, event, span }]).await {
                    Ok(first_time) if first_time == [true] => Outcome::Applied,
                    Ok(_) => Outcome::Duplicate,
                    Err(HandlerError::Permanent(reason)) => Outcome::Parked(reason),
                    Err(HandlerError::Transient(reason)) => Outcome::Retry(reason),
                }
            }
            Err(Undecodable::Malformed(reason)) => Outcome::Parked(reason),
            Err(Undecodable::Foreign(reason)) => {
                tracing::error!(
                    alert = "foreign-event",
                    stream_sequence,
                    reason = %mask_values(&reason),
                    "an event not from its subject's producer; parking it"
                );
                Outcome::Parked(reason)
            }
        };
        let outcome = match outcome {
            Outcome::Retry(reason) if delivered >= i64::from(self.settings.max_deliveries) => {
                // An alert, not a warning: someone must find the cause and retry it from
                // the dead letters (`/admin/dead-letters`).
                tracing::error!(
                    alert = "consumer-gave-up",
                    delivered,
                    stream_sequence,
                    reason = %mask_values(&reason),
                    "event failed on every delivery; parking it"
                );
                Outcome::Parked(format!("gave up after {delivered} deliveries: {reason}"))
            }
            other => other,
        };
        // Parking is a write of its own: if it fails, the message is retried instead.
        let outcome = match outcome {
            Outcome::Parked(reason) => match self.park(&message, stream_sequence, &reason).await {
                Ok(()) => {
                    tracing::error!(stream_sequence, reason = %mask_values(&reason), "message parked in dead_letters");
                    Outcome::Parked(reason)
                }
                Err(error) => {
                    Outcome::Retry(format!("cannot park the message ({reason}): {error}"))
                }
            },
            other => other,
        };
        let ack = match &outcome {
            Outcome::Applied | Outcome::Parked(_) => message.ack().await,
            Outcome::Duplicate => {
                tracing::info!(
                    stream_sequence,
                    "event already handled; acknowledging again"
                );
                message.ack().await
            }
            Outcome::Retry(reason) => self.retry_later(&message, delivered, reason).await,
            Outcome::Ignored => Ok(()),
        };
        if let Err(error) = ack {
            // The effect is committed; JetStream will redeliver and the duplicate is skipped.
            tracing::warn!(%error, stream_sequence, "acknowledgement not sent");
        }
        outcome
    }

    async fn retry_later(
        &self,
        message: &jetstream::Message,
        delivered: i64,
        reason: &str,
    ) -> Result<(), async_nats::Error> {
        let backoff = Backoff::from_settings(self.settings.retry);
        let delay = backoff.delay_for_attempt(u32::try_from(delivered).unwrap_or(u32::MAX));
        tracing::warn!(reason = %mask_values(reason), delivered, retry_in_ms = delay.as_millis() as u64, "event not handled yet; will retry");
        message.ack_with(AckKind::Nak(Some(delay))).await
    }

    async fn park(
        &self,
        message: &jetstream::Message,
        stream_sequence: u64,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        park(&self.pool, &self.durable, message, stream_sequence, reason).await
    }
}

/// The one way events take effect, for a batch of many or of one, and for a dead letter
/// handled again: inside the caller's transaction, the inbox rows of all of them are written by
/// one statement, then the new events take effect together ([`EventHandler::handle_all`]). For
/// each event, whether it was applied now (false: it had been before).
async fn apply_in<H: EventHandler>(
    tx: &mut PgConnection,
    durable: &str,
    handler: &H,
    events: Vec<Received<H::Event>>,
) -> Result<Vec<bool>, HandlerError> {
    let ids: Vec<Uuid> = events.iter().map(|received| received.meta.id).collect();
    let times: Vec<DateTime<Utc>> = events.iter().map(|received| received.meta.time).collect();
    let mut new: HashSet<Uuid> = sqlx::query_scalar!(
        "insert into processed_events (consumer, event_id, subject, event_time)
         select $1, event_id, $2, event_time
         from unnest($3::uuid[], $4::timestamptz[]) as batch (event_id, event_time)
         on conflict do nothing
         returning event_id",
        durable,
        H::Event::SUBJECT,
        &ids,
        &times,
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let mut first_times = Vec::with_capacity(events.len());
    let mut fresh = Vec::with_capacity(new.len());
    for received in events {
        // An event twice in one batch is new only the first time.
        let first_time = new.remove(&received.meta.id);
        if first_time {
            fresh.push(received);
        }
        first_times.push(first_time);
    }
    if !fresh.is_empty() {
        handler.handle_all(tx, fresh).await?;
    }
    Ok(first_times)
}

/// The span of one event's handling: a child of the trace that caused the event (its
/// `traceparent`), so that the handling shows up in the producer's request trace. The request id
/// ties it to that HTTP call in the other service's log.
fn event_span(durable: &str, meta: &EventMeta) -> tracing::Span {
    let span = tracing::info_span!(
        "event",
        durable,
        event_id = %meta.id,
        request_id = meta.request_id.as_deref().unwrap_or(""),
        caller = meta.caller.as_deref().unwrap_or(""),
        stream_sequence = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    crate::infra::telemetry::continue_trace(&span, meta.traceparent.as_deref());
    span
}

/// Binds to durable consumer `durable` of `stream`, which its owner created. A missing one is
/// an error (the caller tries again with its backoff, and `/readyz` says `binding`); a live
/// one that does not read exactly `subjects`, or is not acknowledged one by one, is reported
/// (`alert="consumer-drift"`) and used as it is. Whether an operator paused it (perhaps before
/// this instance started) goes to `states`.
pub async fn bind_durable(
    jetstream: &jetstream::Context,
    stream: &str,
    need: StreamNeed,
    durable: &str,
    subjects: &[&str],
    states: &Consumers,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let stream = crate::infra::nats::open_stream(jetstream, stream, need).await?;
    let consumer = stream
        .get_consumer::<pull::Config>(durable)
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "durable consumer {durable} is not available ({error}); the stream's owner \
                 creates it with `opd-nats stream`"
            )
        })?;
    let info = consumer.cached_info();
    let paused_until = info
        .paused
        .then(|| {
            let remaining = info.pause_remaining.unwrap_or_default();
            chrono::Duration::from_std(remaining)
                .ok()
                .map(|remaining| chrono::Utc::now() + remaining)
        })
        .flatten();
    states.set_paused(durable, paused_until);
    let drift = crate::infra::nats::consumer_drift(subjects, &info.config);
    crate::infra::nats::report_drift("consumer-drift", durable, &drift);
    Ok(consumer)
}

/// The messages of a bound consumer, pulled `batch_size` at a time.
pub async fn pull_messages(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    batch_size: usize,
) -> anyhow::Result<pull::Stream> {
    Ok(consumer
        .stream()
        .max_messages_per_batch(batch_size)
        // A pull request lives on the consumer's leader: when that node goes away, the
        // request is lost without an error, and only missing heartbeats (two in a row) tell.
        // Short heartbeats keep that stall to a few seconds.
        .heartbeat(Duration::from_secs(2))
        .expires(Duration::from_secs(30))
        .messages()
        .await?)
}

/// Adds to `batch` whatever `messages` already holds, up to `max` in all, without waiting.
/// Returns the error that ended the stream, if one did.
pub fn take_ready(
    messages: &mut pull::Stream,
    batch: &mut Vec<jetstream::Message>,
    max: usize,
) -> Option<pull::MessagesError> {
    while batch.len() < max {
        match messages.next().now_or_never() {
            Some(Some(Ok(message))) => batch.push(message),
            Some(Some(Err(error))) => return Some(error),
            Some(None) | None => return None,
        }
    }
    None
}

/// Stores `message`, which consumer `durable` can never handle, with the reason, once per
/// stream sequence. The caller acknowledges it only once this has succeeded.
pub async fn park(
    pool: &PgPool,
    durable: &str,
    message: &async_nats::jetstream::Message,
    stream_sequence: u64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let headers: serde_json::Map<String, serde_json::Value> = message
        .headers
        .iter()
        .flat_map(|map| map.iter())
        .map(|(name, values)| {
            let values = values
                .iter()
                .map(|v| serde_json::Value::String(v.as_str().to_owned()))
                .collect();
            (name.to_string(), serde_json::Value::Array(values))
        })
        .collect();
    let event_id = message
        .headers
        .as_ref()
        .and_then(|map| map.get(crate::events::headers::ID))
        .map(|value| value.as_str().to_owned());
    sqlx::query!(
        "insert into dead_letters
                 (consumer, stream_sequence, subject, event_id, headers, payload, reason)
             values ($1, $2, $3, $4, $5, $6, $7)
             on conflict (consumer, stream_sequence) do nothing",
        durable,
        i64::try_from(stream_sequence).unwrap_or(i64::MAX),
        message.subject.as_str(),
        event_id,
        serde_json::Value::Object(headers),
        message.payload.as_ref(),
        reason,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Sends a progress acknowledgement (`+WPI`) for each message every `period`, until dropped.
async fn keep_in_progress(
    client: async_nats::Client,
    replies: Vec<async_nats::Subject>,
    period: Duration,
) -> std::convert::Infallible {
    let mut ticks = tokio::time::interval(period);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        for reply in &replies {
            if let Err(error) = client.publish(reply.clone(), "+WPI".into()).await {
                tracing::debug!(%error, "progress acknowledgement not sent");
            }
        }
    }
}

/// Why a message can never be handled.
#[derive(Debug)]
pub enum Undecodable {
    /// Headers or payload that are not an event of the subject.
    Malformed(String),
    /// An event of the subject that says another service produced it, or is of another type:
    /// forged with a stolen identity, or misrouted. Parked with an alert.
    Foreign(String),
}

/// Metadata and payload of a message, or why it can never be handled.
pub fn decode<E: Event>(message: &jetstream::Message) -> Result<(EventMeta, E), Undecodable> {
    decode_parts(message.headers.as_ref(), &message.payload)
}

fn decode_parts<E: Event>(
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<(EventMeta, E), Undecodable> {
    let meta = EventMeta::from_headers(headers).map_err(Undecodable::Malformed)?;
    meta.check_origin::<E>().map_err(Undecodable::Foreign)?;
    let event = serde_json::from_slice(payload).map_err(|e| {
        Undecodable::Malformed(format!("payload is not a valid {}: {e}", E::SUBJECT))
    })?;
    Ok((meta, event))
}

/// What became of a dead letter handled again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// No dead letter of this consumer has that id.
    NotFound,
    /// Its effect is committed and the row is gone.
    Applied,
    /// It had been applied before (a copy got through meanwhile); the row is gone.
    Duplicate,
    /// It still cannot be handled: the row stays, with this reason.
    StillParked(String),
    /// The database cannot serve the retry now; nothing changed.
    Unavailable(String),
}

/// Handles dead letter `id` of `durable` again, as the consumer would have: decoded from the
/// headers and payload it was parked with, its event id into the inbox and its effect applied,
/// and the row deleted, all in one transaction. Nothing is published: a consuming service
/// needs no right to publish anything it consumes. If it still cannot be handled the row stays,
/// with the new reason.
pub(crate) async fn retry<H: EventHandler + Default>(
    pool: &PgPool,
    durable: &'static str,
    id: i64,
) -> Retried {
    match try_retry::<H>(pool, durable, id).await {
        Ok(Err(reason)) => {
            // Recording why also tells a failure of the letter from one of the database: if the
            // database cannot take this either, the operator is told to come back later.
            let noted = sqlx::query!(
                "update dead_letters set reason = $3 where id = $1 and consumer = $2",
                id,
                durable,
                reason,
            )
            .execute(pool)
            .await;
            if let Err(error) = noted {
                tracing::warn!(%error, id, reason = %mask_values(&reason), "dead letter not handled again");
                return Retried::Unavailable(error.to_string());
            }
            tracing::warn!(id, durable, reason = %mask_values(&reason), "dead letter still cannot be handled");
            Retried::StillParked(reason)
        }
        Ok(Ok(retried)) => retried,
        Err(error) => Retried::Unavailable(error.to_string()),
    }
}

/// [`retry`]'s transaction: the outcome, or why the letter still cannot be handled (then
/// nothing was written), or a database error.
async fn try_retry<H: EventHandler + Default>(
    pool: &PgPool,
    durable: &'static str,
    id: i64,
) -> Result<Result<Retried, String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(row) = sqlx::query!(
        "delete from dead_letters where id = $1 and consumer = $2 returning headers, payload",
        id,
        durable,
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(Ok(Retried::NotFound));
    };
    let headers = headers_from_json(&row.headers);
    let (meta, event) = match decode_parts::<H::Event>(Some(&headers), &row.payload) {
        Ok(decoded) => decoded,
        Err(Undecodable::Malformed(reason) | Undecodable::Foreign(reason)) => {
            return Ok(Err(reason));
        }
    };
    let span = event_span(durable, &meta);
    match apply_in(
        &mut tx,
        durable,
        &H::default(),
        vec![Received { meta, event, span }],
    )
    .await
    {
        Ok(first_time) => {
            tx.commit().await?;
            tracing::info!(id, durable, "dead letter handled");
            Ok(Ok(if first_time == [true] {
                Retried::Applied
            } else {
                Retried::Duplicate
            }))
        }
        // Rolled back; [`retry`] records why, or finds the database gone.
        Err(HandlerError::Permanent(reason) | HandlerError::Transient(reason)) => Ok(Err(reason)),
    }
}

/// The headers of a parked message, as [`Consumer::park`] stored them (name → values).
fn headers_from_json(stored: &serde_json::Value) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, values) in stored.as_object().into_iter().flatten() {
        for value in values
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
        {
            headers.append(name.as_str(), value);
        }
    }
    headers
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
