//! Keeps a [`Board`] up to date: watches every key of the bucket (an ordered consumer, which
//! JetStream starts with the last value of each key), and checks the day every half minute.
//! If the watch fails it is started again and goes over the bucket once more; the board
//! skips what it has seen.
//!
//! The watch pulls (the client asks for 500 values at a time) rather than being pushed: a
//! pushed watch is sent up to the server's flow-control window (32 MiB of values) ahead of
//! what the board has read: an instance starting on 100,000 visits stood at 44.6 MB 0.6 s in,
//! where a pulled watch peaks at 28 MB (docs/benchmarks.md).
//!
//! An ordered consumer mends itself after a gap, inside the client, and a mend that keeps
//! failing shows only in the log: so every [`STALL_CHECK`] the watcher also asks the bucket how
//! far it is. A board that stayed behind a bucket that had moved on, through a whole check,
//! starts its watch again (`alert="board-stalled"`). The same check notices a bucket made anew
//! (its stream's creation time changed) and starts the board over on it
//! ([`Board::follow_bucket`]).

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::{self, Message};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use opd_shared::events::BOARD_BUCKET;
use opd_shared::infra::retry::{Backoff, sleep_or_cancel};

use super::Board;
use crate::projection::{Visit, patient_of};

/// How often the board checks whether a new day began.
const DAY_CHECK: Duration = Duration::from_secs(30);

/// How often the board compares what it has seen with the bucket's last revision.
const STALL_CHECK: Duration = Duration::from_secs(5);

/// What the subject of each of the bucket's keys starts with.
fn keys_prefix() -> String {
    format!("$KV.{BOARD_BUCKET}.")
}

/// Watches the bucket for `board` until `shutdown`.
pub async fn run(board: Board, jetstream: jetstream::Context, shutdown: CancellationToken) {
    let mut backoff = Backoff::from_millis(200, 5_000);
    while !shutdown.is_cancelled() {
        match follow(&board, &jetstream, &shutdown, &mut backoff).await {
            Ok(()) => break,
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot watch the board's bucket; retrying");
                sleep_or_cancel(delay, &shutdown).await;
            }
        }
    }
    tracing::info!("board watcher stopped");
}

async fn follow(
    board: &Board,
    jetstream: &jetstream::Context,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let bucket = jetstream.get_key_value(BOARD_BUCKET).await.map_err(|error| {
        anyhow::anyhow!(
            "bucket {BOARD_BUCKET} is not available ({error}); the stream's owner creates it with \
             `opd-nats stream`"
        )
    })?;
    let created = bucket.stream.cached_info().created;
    board.follow_bucket(created);
    // An empty bucket sends nothing to a new watch: it is read once it is known to be empty.
    if bucket.stream.clone().info().await?.state.messages == 0 {
        board.caught_up();
    }
    let prefix = keys_prefix();
    let mut entries = bucket
        .stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: format!("{prefix}>"),
            deliver_policy: DeliverPolicy::LastPerSubject,
            description: Some("board watch".into()),
            ..Default::default()
        })
        .await?
        .messages()
        .await?;
    backoff.reset();
    let mut day = tokio::time::interval(DAY_CHECK);
    let mut stall = tokio::time::interval(STALL_CHECK);
    // The board's revision at the last check, if the bucket was ahead of it then.
    let mut behind_at: Option<u64> = None;
    loop {
        let entry = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = day.tick() => {
                board.check_day();
                continue;
            }
            _ = stall.tick() => {
                let mut stream = bucket.stream.clone();
                let info = stream.info().await?;
                if info.created != created {
                    // Its revisions count from 1 again, below what the board has seen.
                    anyhow::bail!("the bucket was made anew");
                }
                let last = info.state.last_sequence;
                let seen = board.revision();
                if last <= seen {
                    behind_at = None;
                } else if behind_at == Some(seen) {
                    tracing::error!(alert = "board-stalled", bucket = last, board = seen, "the board's watch stopped following its bucket; starting it again");
                    anyhow::bail!("the watch stalled at revision {seen}, the bucket is at {last}");
                } else {
                    behind_at = Some(seen);
                }
                continue;
            }
            entry = entries.next() => entry,
        };
        let message = entry.ok_or_else(|| anyhow::anyhow!("the watch ended"))??;
        let entry = Entry::read(&message, &prefix)?;
        // Visits only: a key of another kind (put there by hand, or by a newer version of
        // the projection) is left alone.
        let patient = patient_of(entry.key);
        match (entry.removed, patient) {
            (false, Some(patient)) => match Visit::parse(entry.key, &message.payload) {
                Some(value) => board.take(patient, entry.revision, Some(value)),
                None => {
                    tracing::warn!(key = %entry.key, revision = entry.revision, "a board value this version cannot read; ignored");
                    board.skip(entry.revision);
                }
            },
            (true, Some(patient)) => board.take(patient, entry.revision, None),
            (_, None) => {
                tracing::warn!(key = %entry.key, revision = entry.revision, "a board key this version does not know; ignored");
                board.skip(entry.revision);
            }
        }
        if entry.left == 0 {
            board.caught_up();
        }
    }
}

/// A value of the bucket as the watch reads it off the stream.
struct Entry<'a> {
    key: &'a str,
    /// The bucket's revision: the value's stream sequence.
    revision: u64,
    /// Whether the key was deleted or purged (`KV-Operation`).
    removed: bool,
    /// How many values the watch has still to read after this one.
    left: u64,
}

impl<'a> Entry<'a> {
    /// Reads `message`, whose subject is `prefix` and the key.
    fn read(message: &'a Message, prefix: &str) -> anyhow::Result<Self> {
        let info = message
            .info()
            .map_err(|error| anyhow::anyhow!("a watched value without its metadata: {error}"))?;
        let subject = message.subject.as_str();
        let key = subject.strip_prefix(prefix).unwrap_or(subject);
        let removed = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get("KV-Operation"))
            .is_some_and(|operation| matches!(operation.as_str(), "DEL" | "PURGE"));
        Ok(Self {
            key,
            revision: info.stream_sequence,
            removed,
            left: info.pending,
        })
    }
}
