//! The transactional outbox and its relay to JetStream.
//!
//! A handler calls [`enqueue`] inside the transaction that changes its state, so the event is
//! stored if and only if the change is. The [`Relay`] then publishes stored events in order,
//! with the event id as `Nats-Msg-Id`, and stamps each one published only after JetStream has
//! acknowledged it. A crash between the two leads to a second publish, which JetStream drops
//! as a duplicate inside its window, and which consumers recognise by event id after it.

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{NatsSettings, OutboxSettings};
use crate::events::{Event, EventMeta};
use crate::retry::{Backoff, sleep_or_cancel};
use crate::service::Infra;

/// The PostgreSQL channel that the outbox trigger notifies (see migrations/shared).
const NOTIFY_CHANNEL: &str = "opd_outbox";

/// Who causes an event: the producing service and the HTTP request behind it.
#[derive(Debug, Clone)]
pub struct EventContext {
    /// CloudEvents `source` of the service, e.g. `/opd/registration`.
    pub source: &'static str,
    pub request_id: Option<String>,
}

/// Stores `event` in the outbox as part of the caller's transaction. Returns the event id.
pub async fn enqueue<E: Event>(
    conn: &mut PgConnection,
    event: &E,
    context: &EventContext,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    let payload = serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query!(
        "insert into outbox (id, subject, event_type, source, payload, request_id)
         values ($1, $2, $3, $4, $5, $6)",
        id,
        E::SUBJECT,
        E::TYPE,
        context.source,
        payload,
        context.request_id,
    )
    .execute(conn)
    .await?;
    Ok(id)
}

/// Publishes the outbox to JetStream until cancelled.
pub struct Relay {
    pool: PgPool,
    jetstream: jetstream::Context,
    settings: OutboxSettings,
    nats: NatsSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("creating the stream: {0}")]
    Stream(anyhow::Error),
    #[error("publishing event {id} to {subject}: {reason}")]
    Publish {
        id: Uuid,
        subject: String,
        reason: String,
    },
}

impl Relay {
    pub fn new(infra: &Infra) -> Self {
        Self {
            pool: infra.pool.clone(),
            jetstream: infra.jetstream.clone(),
            settings: infra.settings.outbox.clone(),
            nats: infra.settings.nats.clone(),
        }
    }

    /// One pass of the relay: makes sure of the stream, then publishes up to one batch of
    /// unpublished rows, oldest first. Returns how many it published. [`Relay::run`] repeats
    /// it; tests call it to drive the relay step by step.
    pub async fn step(&self) -> Result<usize, RelayError> {
        crate::nats::ensure_stream(&self.jetstream, &self.nats)
            .await
            .map_err(RelayError::Stream)?;
        self.publish_batch().await
    }

    #[tracing::instrument(name = "outbox_relay", skip_all)]
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::from_settings(self.settings.retry);
        let mut listener = None;
        // A producer may start before any consumer: until the stream is known to exist,
        // make sure of it first, or JetStream has nowhere to store what we publish.
        let mut stream_ready = false;
        while !shutdown.is_cancelled() {
            if listener.is_none() {
                listener = self.listen().await;
            }
            let result = if stream_ready {
                self.publish_batch().await
            } else {
                match crate::nats::ensure_stream(&self.jetstream, &self.nats).await {
                    Ok(_) => {
                        stream_ready = true;
                        continue;
                    }
                    Err(error) => Err(RelayError::Stream(error)),
                }
            };
            match result {
                Ok(published) => {
                    backoff.reset();
                    // A full batch means more may be waiting: go again at once.
                    if published < self.settings.batch_size as usize {
                        self.wait_for_work(&mut listener, &shutdown).await;
                    }
                }
                Err(error) => {
                    // The stream may be what is missing (deleted, or a new cluster).
                    if matches!(error, RelayError::Publish { .. }) {
                        stream_ready = false;
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "outbox relay failed; will retry");
                    sleep_or_cancel(delay, &shutdown).await;
                }
            }
        }
        tracing::info!("outbox relay stopped");
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen(NOTIFY_CHANNEL).await.ok()?;
        Some(listener)
    }

    /// Sleeps until an event is written, the polling tick passes, or shutdown.
    async fn wait_for_work(&self, listener: &mut Option<PgListener>, shutdown: &CancellationToken) {
        let tick = tokio::time::sleep(self.settings.poll_interval);
        match listener {
            Some(active) => {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tick => {}
                    received = active.recv() => {
                        if let Err(error) = received {
                            tracing::warn!(%error, "outbox notifications lost; polling until they are back");
                            *listener = None;
                        }
                    }
                }
            }
            None => {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tick => {}
                }
            }
        }
    }

    /// Publishes up to one batch, oldest first. Rows are locked with `skip locked`, so several
    /// replicas of a service can relay side by side without publishing the same row at once.
    async fn publish_batch(&self) -> Result<usize, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query!(
            "select id, subject, event_type, source, payload, request_id, created_at
             from outbox
             where published_at is null
             order by id
             limit $1
             for update skip locked",
            self.settings.batch_size,
        )
        .fetch_all(&mut *tx)
        .await?;

        let mut published = 0;
        for row in rows {
            let meta = EventMeta {
                id: row.id,
                event_type: row.event_type,
                source: row.source,
                time: row.created_at,
                request_id: row.request_id,
            };
            let subject = row.subject;
            match self.publish(&subject, &meta, &row.payload).await {
                Ok(()) => {
                    sqlx::query!(
                        "update outbox
                         set published_at = now(), attempts = attempts + 1, last_error = null
                         where id = $1",
                        row.id,
                    )
                    .execute(&mut *tx)
                    .await?;
                    published += 1;
                }
                Err(reason) => {
                    sqlx::query!(
                        "update outbox set attempts = attempts + 1, last_error = $2 where id = $1",
                        row.id,
                        reason,
                    )
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    return Err(RelayError::Publish {
                        id: row.id,
                        subject,
                        reason,
                    });
                }
            }
        }
        tx.commit().await?;
        Ok(published)
    }

    async fn publish(
        &self,
        subject: &str,
        meta: &EventMeta,
        payload: &serde_json::Value,
    ) -> Result<(), String> {
        let body = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
        let message = PublishMessage::build()
            .payload(Bytes::from(body))
            .headers(meta.to_headers());
        let publish = async {
            let ack = self
                .jetstream
                .send_publish(subject.to_owned(), message)
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.settings.publish_timeout, publish).await {
            Ok(Ok(ack)) => {
                if ack.duplicate {
                    tracing::debug!(event_id = %meta.id, "JetStream already had this event");
                }
                Ok(())
            }
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err(format!(
                "no acknowledgement within {:?}",
                self.settings.publish_timeout
            )),
        }
    }
}
