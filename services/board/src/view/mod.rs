//! What the board's screens show, held in memory by each board instance: every key of the
//! bucket as its watcher ([`watcher`]) last saw it, and the changes as they come, for the
//! server-sent-event streams ([`crate::routes::events`]) to pass on.
//!
//! Every change carries the bucket's revision; a screen that reconnects with the last one it
//! saw is sent the keys changed since ([`Board::since`]), or a fresh snapshot when that cannot
//! be told (a key removed by hand, a revision this instance has not reached).

pub mod watcher;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::response::sse::Event;
use chrono::{NaiveDate, Utc};
use opd_shared::infra::config::BoardSettings;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::projection::{Entry, Stage};

/// The board as one instance sees it; cheap to clone.
#[derive(Clone)]
pub struct Board {
    inner: Arc<Inner>,
}

struct Inner {
    screen: RwLock<Screen>,
    changes: broadcast::Sender<Change>,
    ready: watch::Sender<bool>,
    streams: Arc<Semaphore>,
    settings: BoardSettings,
    shutdown: CancellationToken,
}

#[derive(Default)]
struct Screen {
    entries: HashMap<String, Held>,
    /// The highest revision seen.
    revision: u64,
    /// The revision at which something was removed by hand (a purge): a screen that saw less
    /// needs a snapshot.
    reset_at: u64,
    day: Option<NaiveDate>,
}

struct Held {
    revision: u64,
    entry: Entry,
}

/// A change, as the streams pass it on.
#[derive(Debug, Clone)]
pub enum Change {
    /// A key's new value, at `revision`, as the screens' event (rendered once, for every
    /// stream); `None` when it is not for today's board.
    Entry { revision: u64, event: Option<Event> },
    /// Everything may have changed (a new day, a key removed): send a snapshot.
    Reset,
}

/// The board of one day: for each stage, the tokens waiting in their order of arrival and the
/// token called last. What `GET /opd/board/state` answers and a stream's `snapshot` carries.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({
    "day": "2026-12-03", "revision": 42,
    "stages": [
        {"stage": "inspection", "waiting": [7, 8, 9], "called": 6},
        {"stage": "treatment", "waiting": [4], "called": 3},
        {"stage": "release", "waiting": [], "called": null}
    ]
}))]
pub struct Snapshot {
    /// The day shown (UTC): tokens count from 1 each day.
    #[schema(value_type = String, format = Date)]
    pub day: NaiveDate,
    /// The bucket's revision this snapshot includes: the `id` of its event on a stream.
    pub revision: u64,
    pub stages: Vec<StageView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StageView {
    #[schema(value_type = String, example = "inspection")]
    pub stage: Stage,
    /// Tokens waiting, first come first.
    pub waiting: Vec<i64>,
    /// The token this stage called last (the one being seen now), if any today.
    pub called: Option<i64>,
}

impl Board {
    pub fn new(settings: BoardSettings, shutdown: CancellationToken) -> Self {
        let (changes, _) = broadcast::channel(settings.buffer);
        Self {
            inner: Arc::new(Inner {
                screen: RwLock::default(),
                changes,
                ready: watch::Sender::new(false),
                streams: Arc::new(Semaphore::new(settings.max_streams)),
                settings,
                shutdown,
            }),
        }
    }

    pub fn settings(&self) -> &BoardSettings {
        &self.inner.settings
    }

    /// Cancelled when the instance stops: every stream ends.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// A place for one more stream, if there is one.
    pub fn open_stream(&self) -> Option<OwnedSemaphorePermit> {
        self.inner.streams.clone().try_acquire_owned().ok()
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.inner.settings.max_streams - self.inner.streams.available_permits()
    }

    /// Whether the watcher has read the whole bucket once.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Waits until [`Board::is_ready`], at most `patience`.
    pub async fn ready_within(&self, patience: Duration) -> bool {
        let mut ready = self.inner.ready.subscribe();
        tokio::time::timeout(patience, ready.wait_for(|ready| *ready))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }

    pub(crate) fn caught_up(&self) {
        self.inner
            .ready
            .send_if_modified(|ready| !std::mem::replace(ready, true));
    }

    /// The highest revision of the bucket this instance has seen.
    pub fn revision(&self) -> u64 {
        self.read().revision
    }

    /// Changes from now on. Take it before reading the state, and skip what the state
    /// already held (revision at most the state's).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// A key as the bucket now holds it (`None`: removed).
    pub(crate) fn take(&self, key: String, revision: u64, entry: Option<Entry>) {
        let mut screen = self.write();
        let known = screen.entries.get(&key).map_or(0, |held| held.revision);
        if revision <= known {
            // Seen before: the watch started again and goes over the bucket once more.
            return;
        }
        screen.revision = screen.revision.max(revision);
        // Sent under the lock: a stream that read the state before sees this change after it,
        // and one that reads it after finds it there.
        match entry {
            Some(entry) => {
                let event = render(revision, &entry);
                screen.entries.insert(key, Held { revision, entry });
                // No stream open is no error.
                let _ = self.inner.changes.send(Change::Entry { revision, event });
            }
            None => {
                if screen.entries.remove(&key).is_some() {
                    screen.reset_at = revision;
                    let _ = self.inner.changes.send(Change::Reset);
                }
            }
        }
    }

    /// Sends every stream a snapshot if the day changed since the last call.
    pub(crate) fn check_day(&self) {
        let today = today();
        let mut screen = self.write();
        if screen.day.replace(today).is_some_and(|day| day != today) {
            screen.reset_at = screen.revision;
            let _ = self.inner.changes.send(Change::Reset);
        }
    }

    /// Today's board.
    pub fn snapshot(&self) -> Snapshot {
        let screen = self.read();
        let day = today();
        let mut waiting: HashMap<Stage, Vec<(u64, i64)>> = HashMap::new();
        let mut called: HashMap<Stage, i64> = HashMap::new();
        for held in screen.entries.values() {
            match &held.entry {
                Entry::Visit(visit) if visit.day == day && visit.stage != Stage::Left => {
                    waiting
                        .entry(visit.stage)
                        .or_default()
                        .push((visit.seq, visit.token));
                }
                Entry::Called(stage, call) if call.day == day => {
                    called.insert(*stage, call.token);
                }
                _ => {}
            }
        }
        let stages = Stage::WAITING
            .into_iter()
            .map(|stage| {
                let mut queue = waiting.remove(&stage).unwrap_or_default();
                queue.sort_unstable();
                StageView {
                    stage,
                    waiting: queue.into_iter().map(|(_, token)| token).collect(),
                    called: called.get(&stage).copied(),
                }
            })
            .collect();
        Snapshot {
            day,
            revision: screen.revision,
            stages,
        }
    }

    /// The changes after `revision`, in order, and the revision they bring a screen to; `None`
    /// when a snapshot is needed instead.
    pub fn since(&self, revision: u64) -> Option<(Vec<(u64, Entry)>, u64)> {
        let screen = self.read();
        if revision > screen.revision || revision < screen.reset_at {
            return None;
        }
        let mut changes: Vec<(u64, Entry)> = screen
            .entries
            .values()
            .filter(|held| held.revision > revision)
            .map(|held| (held.revision, held.entry.clone()))
            .collect();
        changes.sort_unstable_by_key(|(revision, _)| *revision);
        Some((changes, screen.revision))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Screen> {
        self.inner
            .screen
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Screen> {
        self.inner
            .screen
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The day the board shows: tokens count per UTC day.
pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// A change as the screens see it: tokens and stages only, today's only.
pub fn render(revision: u64, entry: &Entry) -> Option<Event> {
    let today = today();
    let (name, data) = match entry {
        Entry::Visit(visit) if visit.day == today => (
            "visit",
            json!({"token": visit.token, "stage": visit.stage.as_str()}),
        ),
        Entry::Called(stage, called) if called.day == today => (
            "called",
            json!({"stage": stage.as_str(), "token": called.token}),
        ),
        _ => return None,
    };
    Some(
        Event::default()
            .event(name)
            .id(revision.to_string())
            .data(data.to_string()),
    )
}
