//! Durable JetStream consumers with idempotent, transactional handlers and a dead-letter table.
//!
//! For each message: decode it; record its event id in `processed_events` and apply the
//! handler's effect in one transaction; commit; then acknowledge. A redelivery of an event that
//! was already applied finds its id recorded and is only acknowledged. A message that can never
//! succeed is parked in `dead_letters` with the reason and acknowledged, so it never blocks the
//! messages behind it. A passing failure (database down) is negatively acknowledged with a
//! growing delay, and JetStream redelivers it.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{ConsumerSettings, NatsSettings};
use crate::events::{Event, EventMeta, subject_with_prefix};
use crate::retry::{Backoff, sleep_or_cancel};

/// How a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Will never succeed (the event contradicts what we know): park it.
    #[error("{0}")]
    Permanent(String),
    /// May succeed later (the database is down): retry with backoff.
    #[error("{0}")]
    Transient(String),
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_transient(&error) {
            Self::Transient(error.to_string())
        } else {
            Self::Permanent(error.to_string())
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
}

/// Runs a durable pull consumer named `durable` over `H::Event::SUBJECT` until cancelled. Every
/// replica of a service uses the same durable name, so each event is handled by one of them.
pub struct Consumer<H> {
    pub durable: String,
    pub pool: PgPool,
    pub jetstream: jetstream::Context,
    pub nats: NatsSettings,
    pub settings: ConsumerSettings,
    pub handler: H,
}

enum Outcome {
    Applied,
    Duplicate,
    Parked(String),
    Retry(String),
}

impl<H: EventHandler> Consumer<H> {
    #[tracing::instrument(name = "consumer", skip_all, fields(durable = %self.durable))]
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::from_millis(500, 10_000);
        while !shutdown.is_cancelled() {
            let mut messages = match self.subscribe().await {
                Ok(messages) => {
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
                match next {
                    Some(Ok(message)) => self.process(message).await,
                    Some(Err(error)) => {
                        // Missed heartbeats, a deleted consumer, a lost connection: bind again.
                        tracing::warn!(%error, "consumer stream failed; binding again");
                        sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                        break;
                    }
                    None => break,
                }
            }
        }
        tracing::info!("consumer stopped");
    }

    async fn subscribe(&self) -> anyhow::Result<pull::Stream> {
        let stream = crate::nats::ensure_stream(&self.jetstream, &self.nats).await?;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(self.durable.clone()),
                filter_subject: subject_with_prefix(&self.nats.subject_prefix, H::Event::SUBJECT),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(self.settings.ack_wait_secs),
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                // Redeliver for as long as it takes: failures that can never succeed are parked
                // by us, not dropped by the server.
                max_deliver: -1,
                ..Default::default()
            })
            .await?;
        Ok(consumer
            .stream()
            .max_messages_per_batch(50)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await?)
    }

    async fn process(&self, message: jetstream::Message) {
        let (stream_sequence, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered),
            Err(error) => {
                tracing::warn!(%error, "message without JetStream metadata; ignored");
                return;
            }
        };
        let outcome = match decode::<H::Event>(&message) {
            Ok((meta, event)) => {
                // The request id ties this handling to the HTTP call that caused the event,
                // in another service's log.
                let span = tracing::info_span!(
                    "event",
                    event_id = %meta.id,
                    request_id = meta.request_id.as_deref().unwrap_or(""),
                    stream_sequence,
                );
                self.apply(event, &meta).instrument(span).await
            }
            Err(reason) => Outcome::Parked(reason),
        };
        let ack = match outcome {
            Outcome::Applied => message.ack().await,
            Outcome::Duplicate => {
                tracing::info!(
                    stream_sequence,
                    "event already handled; acknowledging again"
                );
                message.ack().await
            }
            Outcome::Parked(reason) => match self.park(&message, stream_sequence, &reason).await {
                Ok(()) => {
                    tracing::error!(stream_sequence, %reason, "message parked in dead_letters");
                    message.ack().await
                }
                Err(error) => {
                    self.retry_later(&message, delivered, &error.to_string())
                        .await
                }
            },
            Outcome::Retry(reason) => self.retry_later(&message, delivered, &reason).await,
        };
        if let Err(error) = ack {
            // The effect is committed; JetStream will redeliver and the duplicate is skipped.
            tracing::warn!(%error, stream_sequence, "acknowledgement not sent");
        }
    }

    async fn retry_later(
        &self,
        message: &jetstream::Message,
        delivered: i64,
        reason: &str,
    ) -> Result<(), async_nats::Error> {
        let backoff =
            Backoff::from_millis(self.settings.retry_initial_ms, self.settings.retry_max_ms);
        let delay = backoff.delay_for_attempt(u32::try_from(delivered).unwrap_or(u32::MAX));
        tracing::warn!(%reason, delivered, retry_in_ms = delay.as_millis() as u64, "event not handled yet; will retry");
        message.ack_with(AckKind::Nak(Some(delay))).await
    }

    async fn apply(&self, event: H::Event, meta: &EventMeta) -> Outcome {
        match self.apply_in_transaction(event, meta).await {
            Ok(true) => Outcome::Applied,
            Ok(false) => Outcome::Duplicate,
            Err(HandlerError::Permanent(reason)) => Outcome::Parked(reason),
            Err(HandlerError::Transient(reason)) => Outcome::Retry(reason),
        }
    }

    /// Ok(false) when the event had been applied before.
    async fn apply_in_transaction(
        &self,
        event: H::Event,
        meta: &EventMeta,
    ) -> Result<bool, HandlerError> {
        let mut tx = self.pool.begin().await?;
        let first_time = sqlx::query!(
            "insert into processed_events (consumer, event_id, subject)
             values ($1, $2, $3)
             on conflict do nothing",
            self.durable,
            meta.id,
            H::Event::SUBJECT,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !first_time {
            return Ok(false);
        }
        self.handler.handle(&mut tx, event, meta).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn park(
        &self,
        message: &jetstream::Message,
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
            self.durable,
            i64::try_from(stream_sequence).unwrap_or(i64::MAX),
            message.subject.as_str(),
            event_id,
            serde_json::Value::Object(headers),
            message.payload.as_ref(),
            reason,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Metadata and payload of a message, or why it can never be handled.
fn decode<E: Event>(message: &jetstream::Message) -> Result<(EventMeta, E), String> {
    let meta = EventMeta::from_headers(message.headers.as_ref())?;
    let event = serde_json::from_slice(&message.payload)
        .map_err(|e| format!("payload is not a valid {}: {e}", E::SUBJECT))?;
    Ok((meta, event))
}
