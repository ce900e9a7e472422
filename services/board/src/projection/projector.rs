//! The projection's consumer: reads the patient stream through the durable consumer
//! [`BOARD_DURABLE`] (its subjects in the stream's order), folds each batch into the
//! [`Projection`] and writes the keys it changed to the bucket, then acknowledges.
//!
//! Each replica of the board runs a projector, and the projection's decisions depend on what
//! came before, so no two may work at once on stale knowledge:
//! - the durable hands out one message at a time ([`Durable::one_at_a_time`]): replicas take
//!   turns, never overlap;
//! - a projector that sees a gap in the consumer's delivery sequence knows another replica
//!   took a turn meanwhile, and reads the bucket again before it applies anything;
//! - each write names the revision it replaces (`Nats-Expected-Last-Subject-Sequence`), so a
//!   projector that stalled past `ack_wait` (its message went to another) cannot overwrite a
//!   newer value: its write is refused, it reads the bucket again and the message comes back.
//!
//! Nothing is acknowledged before the bucket has taken its writes, so nothing is lost; a
//! redelivered event finds its sequence in the values it wrote and changes nothing.
//!
//! [`Durable::one_at_a_time`]: opd_shared::events::Durable::one_at_a_time

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer::pull, kv};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::BoxFuture;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use opd_shared::events::consumer::{
    Outcome, Retried, Undecodable, bind_durable, decode, park, pull_messages, take_ready,
};
use opd_shared::events::{
    BOARD_BUCKET, BOARD_DURABLE, Event, PatientAdmissionRequested, PatientDischarged,
    PatientRegistered, PatientReleaseRequested, PatientSentForTreatment,
};
use opd_shared::http::health::{ConsumerState, Consumers};
use opd_shared::infra::Infra;
use opd_shared::infra::config::ConsumerSettings;
use opd_shared::infra::metrics::Metrics;
use opd_shared::infra::nats::StreamNeed;
use opd_shared::infra::retry::{Backoff, sleep_or_cancel};
use opd_shared::service::CustomConsumer;

use super::{Applied, Change, Entry, Projection, Stage};

/// How the board service runs its consumer ([`opd_shared::service::Subscription::custom`]).
pub const CONSUMER: CustomConsumer = CustomConsumer {
    start,
    retry: retry_dead_letter,
};

fn start(
    durable: &'static str,
    infra: &Infra,
    shutdown: CancellationToken,
) -> BoxFuture<'static, ()> {
    Box::pin(Projector::new(durable, infra).run(shutdown))
}

/// A redelivered batch waits this long, so that a refused write is not retried at once.
const REDELIVERY_DELAY: Duration = Duration::from_secs(1);

pub struct Projector {
    durable: &'static str,
    jetstream: jetstream::Context,
    /// The patient stream's name (`nats.stream`).
    stream: String,
    pool: PgPool,
    settings: ConsumerSettings,
    states: Consumers,
    metrics: Arc<Metrics>,
}

/// Why a batch was not projected: the bucket refused or lost a write, or could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
struct Failed {
    what: String,
    reason: String,
}

/// A projector bound to the durable, with the board as it knows it.
struct Session {
    bucket: kv::Store,
    projection: Projection,
    /// The consumer's delivery sequence of the last message this projector took: the next
    /// one must follow it, or another replica took a turn in between.
    last_delivery: Option<u64>,
}

impl Projector {
    pub fn new(durable: &'static str, infra: &Infra) -> Self {
        Self {
            durable,
            jetstream: infra.jetstream.clone(),
            stream: infra.settings.nats.stream.clone(),
            pool: infra.pool.clone(),
            settings: infra.settings.consumer.clone(),
            states: infra.consumers.clone(),
            metrics: infra.metrics.clone(),
        }
    }

    #[tracing::instrument(name = "board_projection", skip_all, fields(durable = self.durable))]
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::from_settings(self.settings.retry);
        while !shutdown.is_cancelled() {
            self.states.set(self.durable, ConsumerState::Binding);
            let (mut session, mut messages) = match self.start().await {
                Ok(started) => started,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot start the board's projection; retrying");
                    sleep_or_cancel(delay, &shutdown).await;
                    continue;
                }
            };
            self.states.set(self.durable, ConsumerState::Consuming);
            backoff.reset();
            tracing::info!(
                keys = session.projection.len(),
                "projecting the patient stream"
            );
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => break,
                    next = messages.next() => next,
                };
                let failure = match next {
                    Some(Ok(first)) => {
                        let mut batch = vec![first];
                        let failure =
                            take_ready(&mut messages, &mut batch, self.settings.batch_size);
                        if let Err(error) = self.project(&mut session, batch).await {
                            // The projection in memory may now differ from the bucket: read
                            // it again, and the batch comes back.
                            tracing::warn!(%error, "batch not projected; reading the board again");
                            sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                            break;
                        }
                        failure
                    }
                    Some(Err(error)) => Some(error),
                    None => break,
                };
                if let Some(error) = failure {
                    tracing::warn!(%error, "consumer stream failed; binding again");
                    sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                    break;
                }
            }
        }
        tracing::info!("projection stopped");
    }

    /// Binds the durable, reads the bucket into a projection, and starts pulling.
    async fn start(&self) -> anyhow::Result<(Session, pull::Stream)> {
        let consumer = bind_durable(
            &self.jetstream,
            &self.stream,
            StreamNeed::Nothing,
            self.durable,
            BOARD_DURABLE.subjects,
            &self.states,
        )
        .await?;
        let live = &consumer.cached_info().config;
        if live.max_ack_pending != 1 {
            // Replicas could then hold messages at once, each deciding on what it last knew.
            opd_shared::infra::nats::report_drift(
                "consumer-drift",
                self.durable,
                &[format!(
                    "max_ack_pending: live {}, expected 1 (one message at a time)",
                    live.max_ack_pending
                )],
            );
        }
        let bucket = self.jetstream.get_key_value(BOARD_BUCKET).await.map_err(|error| {
            anyhow::anyhow!(
                "bucket {BOARD_BUCKET} is not available ({error}); the stream's owner creates it \
                 with `opd-nats stream`"
            )
        })?;
        let projection = read_bucket(&bucket).await?;
        let messages = pull_messages(&consumer, self.settings.batch_size).await?;
        let session = Session {
            bucket,
            projection,
            last_delivery: None,
        };
        Ok((session, messages))
    }

    /// Folds `batch` into `projection`, writes what changed, parks what can never apply, then
    /// acknowledges. An error means nothing was acknowledged and the batch comes back.
    async fn project(
        &self,
        session: &mut Session,
        batch: Vec<jetstream::Message>,
    ) -> Result<(), Failed> {
        let started = Instant::now();
        let mut outcomes = Vec::with_capacity(batch.len());
        for message in &batch {
            let Ok(info) = message.info() else {
                outcomes.push((Outcome::Ignored, None));
                continue;
            };
            let follows = session
                .last_delivery
                .is_none_or(|last| info.consumer_sequence == last + 1);
            if !follows {
                tracing::info!("another replica took a turn; reading the board again");
                if let Err(error) = self.write(session).await {
                    nak_all(&batch).await;
                    return Err(error);
                }
                session.projection = match read_bucket(&session.bucket).await {
                    Ok(projection) => projection,
                    Err(error) => {
                        nak_all(&batch).await;
                        return Err(Failed {
                            what: "reading the board".into(),
                            reason: error.to_string(),
                        });
                    }
                };
            }
            session.last_delivery = Some(info.consumer_sequence);
            let seq = info.stream_sequence;
            outcomes.push(match change_of(message) {
                Ok((time, change)) => match session.projection.apply(seq, change) {
                    Applied::Changed(_) => (Outcome::Applied, Some(time)),
                    Applied::Unchanged(reason) => {
                        tracing::debug!(seq, reason, "event changes nothing on the board");
                        (Outcome::Duplicate, None)
                    }
                },
                Err(Undecodable::Malformed(reason)) => (Outcome::Parked(reason), None),
                Err(Undecodable::Foreign(reason)) => {
                    tracing::error!(alert = "foreign-event", seq, %reason, "an event not from its subject's producer; parking it");
                    (Outcome::Parked(reason), None)
                }
            });
        }
        if let Err(failed) = self.write(session).await {
            nak_all(&batch).await;
            return Err(failed);
        }
        let mut handled = Vec::with_capacity(batch.len());
        let mut redelivered = 0;
        for (message, (outcome, time)) in batch.iter().zip(outcomes) {
            if message.info().is_ok_and(|info| info.delivered > 1) {
                redelivered += 1;
            }
            let outcome = match outcome {
                Outcome::Parked(reason) => self.park(message, reason).await,
                other => other,
            };
            match &outcome {
                Outcome::Retry(_) => nak(message).await,
                Outcome::Ignored => {}
                _ => {
                    if let Err(error) = message.ack().await {
                        // Written: a redelivery finds its sequence in the bucket.
                        tracing::warn!(%error, "acknowledgement not sent");
                    }
                }
            }
            handled.push((outcome.label(), time));
        }
        self.metrics
            .batch_consumed(self.durable, &handled, redelivered, started.elapsed());
        Ok(())
    }

    /// Writes every changed key, all at once, each on condition of the revision it replaces;
    /// waits for every acknowledgement.
    async fn write(&self, session: &mut Session) -> Result<(), Failed> {
        let bucket = &session.bucket;
        let prefix = bucket.put_prefix.as_deref().unwrap_or(&bucket.prefix);
        let mut pending = Vec::new();
        for write in session.projection.writes() {
            let failed = |reason: String| Failed {
                what: format!("writing {} to the board", write.key),
                reason,
            };
            let payload = write.entry.to_json().map_err(|e| failed(e.to_string()))?;
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                write.expected.to_string().as_str(),
            );
            let ack = self
                .jetstream
                .publish_with_headers(format!("{prefix}{}", write.key), headers, payload)
                .await
                .map_err(|e| failed(e.to_string()))?;
            pending.push((write.key, ack));
        }
        let mut failure = None;
        for (key, ack) in pending {
            match ack.await {
                Ok(ack) => session.projection.written(&key, ack.sequence),
                Err(error) => {
                    failure.get_or_insert(Failed {
                        what: format!("writing {key} to the board"),
                        reason: error.to_string(),
                    });
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Stores a message that can never apply in `dead_letters`; if that fails, it is retried.
    async fn park(&self, message: &jetstream::Message, reason: String) -> Outcome {
        let seq = message
            .info()
            .map(|info| info.stream_sequence)
            .unwrap_or_default();
        match park(&self.pool, self.durable, message, seq, &reason).await {
            Ok(()) => {
                tracing::error!(seq, %reason, "message parked in dead_letters");
                Outcome::Parked(reason)
            }
            Err(error) => Outcome::Retry(format!("cannot park the message ({reason}): {error}")),
        }
    }
}

/// Reads every key of the bucket, with its revision.
async fn read_bucket(bucket: &kv::Store) -> anyhow::Result<Projection> {
    let mut projection = Projection::default();
    let held = bucket.stream.clone().info().await?.state.messages;
    if held == 0 {
        return Ok(projection);
    }
    let mut entries = bucket.watch_with_history(">").await?;
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        if entry.operation == kv::Operation::Put
            && let Some(value) = Entry::parse(&entry.key, &entry.value)
        {
            projection.load(entry.key.clone(), entry.revision, value);
        }
        if entry.delta == 0 {
            break;
        }
    }
    Ok(projection)
}

async fn nak_all(batch: &[jetstream::Message]) {
    for message in batch {
        nak(message).await;
    }
}

async fn nak(message: &jetstream::Message) {
    if let Err(error) = message.ack_with(AckKind::Nak(Some(REDELIVERY_DELAY))).await {
        tracing::debug!(%error, "negative acknowledgement not sent; redelivered after ack_wait");
    }
}

/// What `message` does to the board, with the time of its event.
fn change_of(message: &jetstream::Message) -> Result<(DateTime<Utc>, Change), Undecodable> {
    fn left<E: Event>(
        message: &jetstream::Message,
        id: impl Fn(&E) -> i64,
        from: Stage,
    ) -> Result<(DateTime<Utc>, Change), Undecodable> {
        let (meta, event) = decode::<E>(message)?;
        Ok((
            meta.time,
            Change::Left {
                patient: id(&event),
                from,
            },
        ))
    }
    match message.subject.as_str() {
        PatientRegistered::SUBJECT => {
            let (meta, event) = decode::<PatientRegistered>(message)?;
            Ok((
                meta.time,
                Change::Registered {
                    patient: event.id.get(),
                    token: event.token,
                    day: meta.time.date_naive(),
                },
            ))
        }
        PatientSentForTreatment::SUBJECT => left(
            message,
            |e: &PatientSentForTreatment| e.id.get(),
            Stage::Inspection,
        ),
        PatientReleaseRequested::SUBJECT => left(
            message,
            |e: &PatientReleaseRequested| e.id.get(),
            Stage::Treatment,
        ),
        PatientDischarged::SUBJECT => {
            left(message, |e: &PatientDischarged| e.id.get(), Stage::Release)
        }
        PatientAdmissionRequested::SUBJECT => left(
            message,
            |e: &PatientAdmissionRequested| e.id.get(),
            Stage::Release,
        ),
        other => Err(Undecodable::Malformed(format!(
            "the board reads no events on {other}"
        ))),
    }
}

/// The operator's retry of one of the projection's dead letters. What it parks can never apply
/// (it does not decode, or comes from the wrong producer), and the projection applies events in
/// the stream's order only: the letter stays, and says so.
fn retry_dead_letter(pool: PgPool, durable: &'static str, id: i64) -> BoxFuture<'static, Retried> {
    Box::pin(async move {
        match sqlx::query_scalar!(
            "select reason from dead_letters where consumer = $1 and id = $2",
            durable,
            id
        )
        .fetch_optional(&pool)
        .await
        {
            Ok(None) => Retried::NotFound,
            Ok(Some(reason)) => Retried::StillParked(format!(
                "{reason}; the board applies events in the stream's order only, and the \
                 visit's next event puts it right"
            )),
            Err(error) => Retried::Unavailable(error.to_string()),
        }
    })
}
