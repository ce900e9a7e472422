//! Deletes the rows nobody can need any more, as a task of its own beside the relay: published
//! outbox rows after `outbox.retention`, handled-event ids after `consumer.inbox_retention`,
//! idempotency keys after `http.idempotency_retention`.
//!
//! Each round deletes every expired row, a batch at a time (so that no statement holds its
//! locks for long), until a batch comes back short; so however fast rows are written, each
//! round catches up, and the tables stay as large as their retention makes them.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::infra::Infra;
use crate::infra::retry::sleep_or_cancel;

/// Rows deleted by one statement.
const BATCH: i64 = 5000;

/// What one round deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub outbox: u64,
    pub inbox: u64,
    pub keys: u64,
}

pub struct Housekeeping {
    pool: PgPool,
    outbox_retention: Duration,
    inbox_retention: Duration,
    key_retention: Duration,
    interval: Duration,
}

/// The tables housekept, each by the statement that deletes one batch of its expired rows.
#[derive(Clone, Copy)]
enum Table {
    Outbox,
    Inbox,
    Keys,
}

impl Housekeeping {
    pub fn new(infra: &Infra) -> Self {
        let settings = &infra.settings;
        Self {
            pool: infra.pool.clone(),
            outbox_retention: settings.outbox.retention,
            inbox_retention: settings.consumer.inbox_retention,
            key_retention: settings.http.idempotency_retention,
            interval: settings.outbox.prune_interval,
        }
    }

    /// A round every `outbox.prune_interval`, the first at once, until cancelled.
    #[tracing::instrument(name = "housekeeping", skip_all)]
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            // A round is not cut short by shutdown: the task's grace period bounds it.
            match self.sweep().await {
                Ok(swept) if swept != Swept::default() => {
                    tracing::info!(
                        outbox = swept.outbox,
                        inbox = swept.inbox,
                        keys = swept.keys,
                        "deleted expired outbox, inbox and idempotency rows"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "housekeeping failed; will try again"),
            }
            sleep_or_cancel(self.interval, &shutdown).await;
        }
    }

    /// One round: every expired row of the three tables, a batch at a time.
    pub async fn sweep(&self) -> Result<Swept, sqlx::Error> {
        Ok(Swept {
            outbox: self.drain(Table::Outbox).await?,
            inbox: self.drain(Table::Inbox).await?,
            keys: self.drain(Table::Keys).await?,
        })
    }

    /// Deletes batches until one comes back short.
    async fn drain(&self, table: Table) -> Result<u64, sqlx::Error> {
        let mut deleted = 0;
        loop {
            let batch = self.delete_batch(table).await?;
            deleted += batch;
            if batch < BATCH.unsigned_abs() {
                return Ok(deleted);
            }
        }
    }

    // Three statements rather than one with the table's name as a parameter: `sqlx::query!`
    // checks each against the schema at compile time, and a table name cannot be bound.
    async fn delete_batch(&self, table: Table) -> Result<u64, sqlx::Error> {
        let result = match table {
            Table::Outbox => {
                sqlx::query!(
                    "delete from outbox where id in (
                         select id from outbox
                         where published_at < now() - make_interval(secs => $1)
                         limit $2
                     )",
                    self.outbox_retention.as_secs_f64(),
                    BATCH,
                )
                .execute(&self.pool)
                .await?
            }
            Table::Inbox => {
                sqlx::query!(
                    "delete from processed_events where (consumer, event_id) in (
                         select consumer, event_id from processed_events
                         where processed_at < now() - make_interval(secs => $1)
                         limit $2
                     )",
                    self.inbox_retention.as_secs_f64(),
                    BATCH,
                )
                .execute(&self.pool)
                .await?
            }
            Table::Keys => {
                sqlx::query!(
                    "delete from idempotency_keys where key in (
                         select key from idempotency_keys
                         where created_at < now() - make_interval(secs => $1)
                         limit $2
                     )",
                    self.key_retention.as_secs_f64(),
                    BATCH,
                )
                .execute(&self.pool)
                .await?
            }
        };
        Ok(result.rows_affected())
    }
}
