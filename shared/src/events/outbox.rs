//! The transactional outbox and its relay to JetStream.
//!
//! A handler calls [`enqueue`] inside the transaction that changes its state, so the event is
//! stored if and only if the change is, and wakes the relay once it has committed
//! ([`crate::service::AppState::events_written`]). The [`Relay`] claims a batch of unpublished
//! rows with a short lease, publishes them all at once (one acknowledgement future per event,
//! awaited together), then stamps the ones JetStream acknowledged in one statement. No
//! transaction stays open while it talks to NATS. Each event carries its id as `Nats-Msg-Id`: a
//! relay that dies between publishing and stamping leaves the rows to be published again once
//! the lease runs out, and JetStream drops the repeat inside its duplicate window (consumers
//! recognise it by event id after that).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use futures::future::join_all;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::events::{Event, EventMeta};
use crate::infra::Infra;
use crate::infra::config::OutboxSettings;
use crate::infra::nats::StreamNeed;
use crate::infra::retry::{Backoff, sleep_or_cancel};

/// Who causes an event: the HTTP request behind it and its caller. (Its `source` is the
/// producer the event's contract names, [`Event::SOURCE`].) Handlers take it as an extractor.
#[derive(Debug, Clone, Default)]
pub struct EventContext {
    pub request_id: Option<String>,
    /// The subject of the caller's token ([`crate::auth::Caller`]).
    pub caller: Option<String>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for EventContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let crate::http::RequestId(request_id) =
            crate::http::RequestId::from_request_parts(parts, state).await?;
        let caller = parts
            .extensions
            .get::<crate::auth::Caller>()
            .map(|caller| caller.subject.clone());
        Ok(Self { request_id, caller })
    }
}

/// Everything of an outbox row but its payload: for [`enqueue`], and for a statement that
/// builds the payload itself in SQL (registration's, which needs the token it hands out).
#[derive(Debug, Clone)]
pub struct Envelope {
    pub id: Uuid,
    pub subject: &'static str,
    pub event_type: &'static str,
    pub source: &'static str,
    pub request_id: Option<String>,
    pub caller: Option<String>,
    /// The trace of the request that writes the event: the consumer's handling continues it.
    pub traceparent: Option<String>,
}

impl Envelope {
    pub fn new<E: Event>(context: &EventContext) -> Self {
        Self {
            id: Uuid::now_v7(),
            subject: E::SUBJECT,
            event_type: E::TYPE,
            source: E::SOURCE,
            request_id: context.request_id.clone(),
            caller: context.caller.clone(),
            traceparent: crate::infra::telemetry::current_traceparent(),
        }
    }
}

/// Stores `event` in the outbox as part of the caller's transaction. Returns the event id.
pub async fn enqueue<E: Event>(
    conn: &mut PgConnection,
    event: &E,
    context: &EventContext,
) -> Result<Uuid, sqlx::Error> {
    let envelope = Envelope::new::<E>(context);
    let payload = serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query!(
        "insert into outbox (id, subject, event_type, source, payload, request_id, caller,
                             traceparent)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
        envelope.id,
        envelope.subject,
        envelope.event_type,
        envelope.source,
        payload,
        envelope.request_id,
        envelope.caller,
        envelope.traceparent,
    )
    .execute(conn)
    .await?;
    Ok(envelope.id)
}

/// Publishes the outbox to JetStream until cancelled.
pub struct Relay {
    pool: PgPool,
    jetstream: jetstream::Context,
    settings: OutboxSettings,
    /// The stream's name (`nats.stream`).
    stream: String,
    wake: Arc<Notify>,
    metrics: Arc<crate::infra::metrics::Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("opening the stream: {0}")]
    Stream(anyhow::Error),
    #[error("{failed} of {claimed} events not published; first: event {id} to {subject}: {reason}")]
    Publish {
        failed: usize,
        claimed: usize,
        id: Uuid,
        subject: String,
        reason: String,
    },
}

struct Claimed {
    id: Uuid,
    subject: String,
    meta: EventMeta,
    payload: serde_json::Value,
}

impl Relay {
    pub fn new(infra: &Infra) -> Self {
        Self {
            pool: infra.relay_pool.clone(),
            jetstream: infra.jetstream.clone(),
            settings: infra.settings.outbox.clone(),
            stream: infra.settings.nats.stream.clone(),
            wake: infra.outbox_written.clone(),
            metrics: infra.metrics.clone(),
        }
    }

    /// The stream, with the republish window checked against its duplicate window.
    async fn open_stream(&self) -> anyhow::Result<async_nats::jetstream::stream::Stream> {
        let need = StreamNeed::RepublishWindow(self.settings.republish_window);
        crate::infra::nats::open_stream(&self.jetstream, &self.stream, need).await
    }

    /// One pass of the relay: makes sure of the stream, then publishes up to one batch of
    /// unpublished rows, oldest first. Returns how many it published. [`Relay::run`] repeats
    /// it; tests call it to drive the relay step by step.
    pub async fn step(&self) -> Result<usize, RelayError> {
        self.open_stream().await.map_err(RelayError::Stream)?;
        self.publish_batch().await
    }

    #[tracing::instrument(name = "outbox_relay", skip_all)]
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::from_settings(self.settings.retry);
        // A producer may start before any consumer: until the stream is known to exist,
        // make sure of it first, or JetStream has nowhere to store what we publish.
        let mut stream_ready = false;
        // The server process we last published to. Another one (a restarted node, a failover,
        // and our own start) may not hold what we published most recently.
        let client = self.jetstream.client();
        let mut published_to: Option<String> = None;
        let started = chrono::Utc::now();
        while !shutdown.is_cancelled() {
            if client.connection_state() == async_nats::connection::State::Connected {
                let server = client.server_info().server_id;
                if published_to.as_ref() != Some(&server) {
                    // At our start, what was published before it is in doubt (not what other
                    // replicas publish meanwhile); on a new server later, everything until now.
                    let until = if published_to.is_none() {
                        started
                    } else {
                        chrono::Utc::now()
                    };
                    if self.republish_recent(until).await.is_ok() {
                        published_to = Some(server);
                    }
                }
            }
            let result = if stream_ready {
                self.publish_batch().await
            } else {
                match self.open_stream().await {
                    Ok(_) => {
                        stream_ready = true;
                        continue;
                    }
                    Err(error) => Err(RelayError::Stream(error)),
                }
            };
            match result {
                // A full batch means more may be waiting: go again at once.
                Ok(published) if published >= self.batch_size() => backoff.reset(),
                Ok(_) => {
                    backoff.reset();
                    self.wait_for_work(&shutdown).await;
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
        self.drain().await;
        tracing::info!("outbox relay stopped");
    }

    /// Marks the events published within `outbox.republish_window` as unpublished, so that
    /// the relay publishes them again. JetStream acknowledges a write before its nodes flush it
    /// to disk (`sync_interval` in nats/node.conf), so a power loss of every node can drop the
    /// newest events; once connected to another server process (or at our own start) nothing
    /// tells us whether it did.
    /// Repeats cost little: JetStream drops those it still holds (the window is shorter than
    /// the stream's duplicate window), and consumers recognise the rest by event id.
    async fn republish_recent(
        &self,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), sqlx::Error> {
        let marked = sqlx::query!(
            "update outbox set published_at = null, claimed_until = null
             where published_at > $2::timestamptz - make_interval(secs => $1)
               and published_at <= $2",
            self.settings.republish_window.as_secs_f64(),
            until,
        )
        .execute(&self.pool)
        .await
        .inspect_err(|error| tracing::warn!(%error, "recent events not marked for republishing"))?
        .rows_affected();
        if marked > 0 {
            tracing::info!(
                marked,
                "publishing recent events again after a (re)connection"
            );
        }
        Ok(())
    }

    /// At shutdown, after the last requests have finished: publishes what they committed, so
    /// that a service scaled down for good leaves nothing behind in its outbox. It stops at the
    /// first failure (NATS gone): the rows wait for the next start, or another replica.
    async fn drain(&self) {
        loop {
            match self.publish_batch().await {
                Ok(published) if published > 0 => {
                    tracing::info!(published, "published at shutdown");
                }
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "outbox not drained at shutdown; rows wait for a relay");
                    break;
                }
            }
        }
    }

    fn batch_size(&self) -> usize {
        usize::try_from(self.settings.batch_size).unwrap_or(0)
    }

    /// Sleeps until a request wakes us, the polling tick passes, or shutdown. The tick finds
    /// rows that another replica wrote and could not relay (it died), once their lease is out.
    async fn wait_for_work(&self, shutdown: &CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(self.settings.poll_interval) => return,
            () = self.wake.notified() => {}
        }
        // Woken by a commit: the commits just behind it join its batch.
        if !self.settings.linger.is_zero() {
            sleep_or_cancel(self.settings.linger, shutdown).await;
        }
    }

    /// Claims up to one batch, oldest first, publishes it and stamps what was acknowledged.
    /// Several replicas relay side by side: `skip locked` and the lease keep them off each
    /// other's rows.
    async fn publish_batch(&self) -> Result<usize, RelayError> {
        let claimed = self.claim().await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let sent = std::time::Instant::now();
        let outcomes = self.publish_all(&claimed).await;
        let failed = outcomes.iter().filter(|outcome| outcome.is_err()).count();
        self.metrics
            .batch_published(claimed.len() - failed, failed, sent.elapsed());
        let published: Vec<Uuid> = claimed
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| outcome.is_ok())
            .map(|(row, _)| row.id)
            .collect();
        sqlx::query!(
            "update outbox
             set published_at = now(), attempts = attempts + 1, last_error = null,
                 claimed_until = null
             where id = any($1)",
            &published,
        )
        .execute(&self.pool)
        .await?;
        let failures: Vec<(&Claimed, &String)> = claimed
            .iter()
            .zip(&outcomes)
            .filter_map(|(row, outcome)| outcome.as_ref().err().map(|reason| (row, reason)))
            .collect();
        for (row, reason) in &failures {
            // The row waits out a backoff of its own (growing with its attempts), so that a row
            // that cannot be published does not hold up the rows behind it.
            sqlx::query!(
                "update outbox
                 set attempts = attempts + 1, last_error = $2,
                     claimed_until = now() + make_interval(
                         secs => least(power(2, least(attempts, 30)) * $3, $4))
                 where id = $1",
                row.id,
                reason.as_str(),
                self.settings.retry.initial.as_secs_f64(),
                self.settings.retry.max.as_secs_f64(),
            )
            .execute(&self.pool)
            .await?;
        }
        match failures.first() {
            None => Ok(published.len()),
            // Others went through: NATS is fine, these rows are the problem. Reported, and
            // the relay goes on at full speed.
            Some((row, reason)) if !published.is_empty() => {
                tracing::warn!(
                    failed = failures.len(),
                    event_id = %row.id,
                    subject = %row.subject,
                    %reason,
                    "events not published; each will be retried after its own backoff"
                );
                Ok(published.len())
            }
            Some((row, reason)) => Err(RelayError::Publish {
                failed: failures.len(),
                claimed: claimed.len(),
                id: row.id,
                subject: row.subject.clone(),
                reason: (*reason).clone(),
            }),
        }
    }

    async fn claim(&self) -> Result<Vec<Claimed>, sqlx::Error> {
        // Long enough for every publish of the batch to be acknowledged or to time out.
        let lease = (self.settings.publish_timeout * 2 + Duration::from_secs(5)).as_secs_f64();
        let mut rows = sqlx::query!(
            "update outbox set claimed_until = now() + make_interval(secs => $2)
             where id in (
                 select id from outbox
                 where published_at is null and (claimed_until is null or claimed_until < now())
                 order by id
                 limit $1
                 for update skip locked
             )
             returning id, subject, event_type, source, payload, request_id, caller,
                       traceparent, created_at",
            self.settings.batch_size,
            lease,
        )
        .fetch_all(&self.pool)
        .await?;
        // Event ids are UUIDv7, in the order the events were written.
        rows.sort_by_key(|row| row.id);
        Ok(rows
            .into_iter()
            .map(|row| Claimed {
                id: row.id,
                meta: EventMeta {
                    id: row.id,
                    event_type: row.event_type,
                    source: row.source,
                    time: row.created_at,
                    request_id: row.request_id,
                    caller: row.caller,
                    traceparent: row.traceparent,
                },
                subject: row.subject,
                payload: row.payload,
            })
            .collect())
    }

    /// Sends every publish in order on the one connection, then awaits the acknowledgements
    /// together: one round trip's wait for the whole batch instead of one per event.
    async fn publish_all(&self, rows: &[Claimed]) -> Vec<Result<(), String>> {
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            pending.push(self.send(row).await);
        }
        let timeout = self.settings.publish_timeout;
        join_all(pending.into_iter().map(|sent| async move {
            let ack = sent?;
            match tokio::time::timeout(timeout, ack).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("no acknowledgement within {timeout:?}")),
            }
        }))
        .await
    }

    async fn send(&self, row: &Claimed) -> Result<jetstream::context::PublishAckFuture, String> {
        let body = serde_json::to_vec(&row.payload).map_err(|e| e.to_string())?;
        let message = PublishMessage::build()
            .payload(Bytes::from(body))
            .headers(row.meta.to_headers());
        self.jetstream
            .send_publish(row.subject.clone(), message)
            .await
            .map_err(|e| e.to_string())
    }
}
