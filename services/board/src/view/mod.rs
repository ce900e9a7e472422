//! What the board's screens show, held in memory by each board instance: every visit of the
//! bucket as its watcher ([`watcher`]) last saw it, the token each desk called last (the
//! latest departure from its queue, read off the visits), and the changes as they come, for
//! the server-sent-event streams ([`crate::routes::events`]) to pass on.
//!
//! Every change carries the bucket's revision; a screen that reconnects with the last one it
//! saw is sent the visits changed since ([`Board::since`]), or a fresh snapshot when that
//! cannot be told (a key removed by hand, a patient's second visit, a revision this instance
//! has not reached).

#[cfg(test)]
mod tests;
mod visits;
pub mod watcher;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_nats::datetime::DateTime;
use axum::response::sse::Event;
use chrono::{NaiveDate, Utc};
use opd_shared::domain::Site;
use opd_shared::infra::config::BoardSettings;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::projection::{Stage, Visit};
use visits::Visits;

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
    /// Every visit of the bucket, by patient: a day can bring many, and each instance holds
    /// them all, so only what a screen shows of each is kept ([`Held`]), in a sorted vector
    /// rather than a hash map ([`visits`]).
    visits: Visits<Held>,
    issuers: Issuers,
    /// Per waiting stage: the latest departure from its queue, as (stream sequence, day,
    /// token, the bucket's revision that brought it).
    called: [Option<Call>; 3],
    /// The highest revision seen.
    revision: u64,
    /// The revision at which a screen that saw less needs a snapshot: something left the
    /// board in a way a change cannot say (a key removed by hand, a token replaced).
    reset_at: u64,
    day: Option<NaiveDate>,
    /// The creation time of the bucket's stream these revisions count in.
    bucket: Option<DateTime>,
}

/// What the board keeps of a visit: the bucket's revision that brought it, and where its token
/// is (none while no registration of it has been merged).
#[derive(Clone, Copy)]
struct Held {
    revision: u64,
    shown: Option<Shown>,
}

/// A visit as the screens see it.
#[derive(Clone, Copy)]
struct Shown {
    token: i64,
    /// When it joined the queue it waits in ([`Visit::joined`]).
    joined: u64,
    /// The site and day that gave its token: their place in [`Screen::issuers`].
    issuer: u32,
    stage: Stage,
}

// Thirty-two bytes a visit (40 with the patient's number): a field added here costs every
// instance that much per visit of the day. The token's site and day are one small number for
// that reason: a day and a site's place apart would take eight bytes, not four.
const _: () = assert!(std::mem::size_of::<Held>() <= 32);

impl Shown {
    /// What a screen would show differently: the token, its site and day, where it waits.
    fn place(&self) -> (i64, u32, Stage) {
        (self.token, self.issuer, self.stage)
    }
}

/// Each site and day that gave a token this instance has seen, held once: visits keep its place
/// in this list. Tokens count per site and day, so a token's number means something only with
/// both. It grows by one for each site of the hospital each day.
#[derive(Default)]
struct Issuers {
    issuers: Vec<(Site, NaiveDate)>,
    places: HashMap<(Site, NaiveDate), u32>,
}

impl Issuers {
    fn place(&mut self, site: &Site, day: NaiveDate) -> u32 {
        let issuer = (site.clone(), day);
        if let Some(place) = self.places.get(&issuer) {
            return *place;
        }
        // Four thousand million sites and days: a board never sees as many; one that did would
        // show the later ones' tokens on no day (`day` finds no place), rather than misplace them.
        let place = u32::try_from(self.issuers.len()).unwrap_or(u32::MAX);
        if place < u32::MAX {
            self.issuers.push(issuer.clone());
            self.places.insert(issuer, place);
        }
        place
    }

    /// The day that gave the visit's token.
    fn day(&self, shown: &Shown) -> Option<NaiveDate> {
        self.issuers.get(shown.issuer as usize).map(|(_, day)| *day)
    }

    fn ticket(&self, shown: &Shown) -> Ticket {
        Ticket {
            token: shown.token,
            site: self
                .issuers
                .get(shown.issuer as usize)
                .map_or_else(Site::hospital, |(site, _)| site.clone()),
        }
    }
}

#[derive(Clone)]
struct Call {
    seq: u64,
    day: NaiveDate,
    ticket: Ticket,
    revision: u64,
}

/// A token as a screen shows it: its number and the site that gave it (tokens count per site
/// and day, so the number alone can be two patients').
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[schema(example = json!({"token": 7, "site": "hospital"}))]
pub struct Ticket {
    pub token: i64,
    #[schema(value_type = String)]
    pub site: Site,
}

/// What a screen shows of a visit: its token, where it waits, on which day, and its place in
/// that queue.
fn shown(visit: &Visit, issuers: &mut Issuers) -> Option<Shown> {
    let stage = visit.stage()?;
    Some(Shown {
        token: visit.token,
        joined: visit.joined(),
        issuer: issuers.place(&visit.site, visit.day?),
        stage,
    })
}

/// A change, as the streams pass it on.
#[derive(Debug, Clone)]
pub enum Change {
    /// A visit's new value, at `revision`, as the screens' events (rendered once, for every
    /// stream): where its token is now, and a desk's new call; none when nothing shown
    /// changed.
    Events { revision: u64, events: Vec<Event> },
    /// Everything may have changed (a new day, a key removed): send a snapshot.
    Reset,
}

/// The board of one day: for each stage, the tokens waiting in their order of arrival and the
/// token called last. What `GET /opd/board/state` answers and a stream's `snapshot` carries.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({
    "day": "2026-12-03", "revision": 42,
    "stages": [
        {"stage": "inspection",
         "waiting": [{"token": 7, "site": "hospital"}, {"token": 2, "site": "clinic"}],
         "orders": [31, 33], "called": {"token": 6, "site": "hospital"}},
        {"stage": "treatment", "waiting": [{"token": 4, "site": "hospital"}], "orders": [30],
         "called": {"token": 3, "site": "hospital"}},
        {"stage": "release", "waiting": [], "orders": [], "called": null}
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
    pub waiting: Vec<Ticket>,
    /// For each waiting token, when it joined the queue (a stream sequence): what "first come"
    /// means. A screen places a token that a `visit` event moves into a queue by its `order`.
    pub orders: Vec<u64>,
    /// The token this stage called last (the one being seen now), if any today.
    pub called: Option<Ticket>,
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

    /// A patient's visit as the bucket now holds it (`None`: removed).
    pub(crate) fn take(&self, patient: i64, revision: u64, visit: Option<Visit>) {
        let mut screen = self.write();
        let screen = &mut *screen;
        let held = screen.visits.get(patient).copied();
        if revision <= held.map_or(0, |held| held.revision) {
            // Seen before: the watch started again and goes over the bucket once more.
            return;
        }
        screen.revision = screen.revision.max(revision);
        let before = held.and_then(|held| held.shown);
        // Sent under the lock: a stream that read the state before sees this change after it,
        // and one that reads it after finds it there.
        let Some(visit) = visit else {
            if screen.visits.remove(patient).is_some() {
                screen.reset_at = screen.reset_at.max(revision);
                let _ = self.inner.changes.send(Change::Reset);
            }
            return;
        };
        let after = shown(&visit, &mut screen.issuers);
        let mut events = Vec::new();
        if let (Some(old), Some(new)) = (&before, &after)
            && (old.token, old.issuer) != (new.token, new.issuer)
        {
            // A second visit of the patient: its old token must leave the screens, which a
            // change cannot say; screens behind this revision get a snapshot.
            screen.reset_at = screen.reset_at.max(revision);
            let _ = self.inner.changes.send(Change::Reset);
        } else if after.map(|new| new.place()) != before.map(|old| old.place())
            && let Some(new) = &after
            && screen.issuers.day(new) == Some(today())
        {
            let ticket = screen.issuers.ticket(new);
            events.push(visit_event(revision, &ticket, new.stage, new.joined));
        }
        for (index, stage) in Stage::WAITING.into_iter().enumerate() {
            let Some(call) = &visit.calls[index] else {
                continue;
            };
            if screen.called[index]
                .as_ref()
                .is_some_and(|known| known.seq >= call.seq)
            {
                continue;
            }
            let ticket = Ticket {
                token: call.token,
                site: call.site.clone(),
            };
            if call.day == today() {
                events.push(called_event(revision, stage, &ticket));
            }
            screen.called[index] = Some(Call {
                seq: call.seq,
                day: call.day,
                ticket,
                revision,
            });
        }
        screen.visits.insert(
            patient,
            Held {
                revision,
                shown: after,
            },
        );
        if !events.is_empty() {
            // No stream open is no error.
            let _ = self.inner.changes.send(Change::Events { revision, events });
        }
    }

    /// A revision of the bucket that shows nothing (a key the board does not read): seen all
    /// the same, so that the board is not taken for behind its bucket.
    pub(crate) fn skip(&self, revision: u64) {
        let mut screen = self.write();
        screen.revision = screen.revision.max(revision);
    }

    /// The watcher follows the bucket whose stream was created at `created`. A bucket made
    /// anew (deleted, and created again to rebuild the board from the stream) counts its
    /// revisions from 1 again: what this instance holds of the old one goes, every stream is
    /// sent a snapshot of the board as it is rebuilt, and a screen that comes back with a
    /// revision of the old bucket gets a snapshot too, not the changes after it.
    pub(crate) fn follow_bucket(&self, created: DateTime) {
        let mut screen = self.write();
        let Some(before) = screen.bucket.replace(created) else {
            return;
        };
        if before != created {
            tracing::warn!(
                revision = screen.revision,
                "the board's bucket was made anew; starting the board over"
            );
            *screen = Screen {
                reset_at: screen.revision.saturating_add(1),
                day: screen.day,
                bucket: Some(created),
                ..Screen::default()
            };
            let _ = self.inner.changes.send(Change::Reset);
        }
    }

    /// Sends every stream a snapshot if the day changed since the last call.
    pub(crate) fn check_day(&self) {
        let today = today();
        let mut screen = self.write();
        if screen.day.replace(today).is_some_and(|day| day != today) {
            screen.reset_at = screen.reset_at.max(screen.revision);
            let _ = self.inner.changes.send(Change::Reset);
        }
    }

    /// Today's board.
    pub fn snapshot(&self) -> Snapshot {
        let screen = self.read();
        let day = today();
        let mut waiting: HashMap<Stage, Vec<(u64, Ticket)>> = HashMap::new();
        for shown in screen.visits.values().filter_map(|held| held.shown) {
            if screen.issuers.day(&shown) == Some(day) && shown.stage != Stage::Left {
                waiting
                    .entry(shown.stage)
                    .or_default()
                    .push((shown.joined, screen.issuers.ticket(&shown)));
            }
        }
        let stages = Stage::WAITING
            .into_iter()
            .zip(screen.called.iter())
            .map(|(stage, call)| {
                let mut queue = waiting.remove(&stage).unwrap_or_default();
                queue.sort_unstable();
                let (orders, waiting) = queue.into_iter().unzip();
                StageView {
                    stage,
                    waiting,
                    orders,
                    called: call
                        .as_ref()
                        .filter(|call| call.day == day)
                        .map(|call| call.ticket.clone()),
                }
            })
            .collect();
        Snapshot {
            day,
            revision: screen.revision,
            stages,
        }
    }

    /// The events that bring a screen from `revision` to now, in order, and the revision they
    /// bring it to; `None` when a snapshot is needed instead.
    pub fn since(&self, revision: u64) -> Option<(Vec<Event>, u64)> {
        let screen = self.read();
        if revision > screen.revision || revision < screen.reset_at {
            return None;
        }
        let today = today();
        let mut changed: Vec<(u64, Event)> = screen
            .visits
            .values()
            .filter(|held| held.revision > revision)
            .filter_map(|held| {
                let shown = held
                    .shown
                    .filter(|shown| screen.issuers.day(shown) == Some(today))?;
                let ticket = screen.issuers.ticket(&shown);
                let event = visit_event(held.revision, &ticket, shown.stage, shown.joined);
                Some((held.revision, event))
            })
            .collect();
        for (stage, call) in Stage::WAITING.into_iter().zip(screen.called.iter()) {
            if let Some(call) = call
                .as_ref()
                .filter(|call| call.revision > revision && call.day == today)
            {
                changed.push((
                    call.revision,
                    called_event(call.revision, stage, &call.ticket),
                ));
            }
        }
        changed.sort_by_key(|(revision, _)| *revision);
        Some((
            changed.into_iter().map(|(_, event)| event).collect(),
            screen.revision,
        ))
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

/// A token's move, as the screens see it: the token and its site, where it is, and its place
/// there (when it joined that queue), nothing else.
fn visit_event(revision: u64, ticket: &Ticket, stage: Stage, order: u64) -> Event {
    let data = json!({
        "token": ticket.token, "site": ticket.site, "stage": stage.as_str(), "order": order
    });
    Event::default()
        .event("visit")
        .id(revision.to_string())
        .data(data.to_string())
}

/// A desk's call, as the screens see it.
fn called_event(revision: u64, stage: Stage, ticket: &Ticket) -> Event {
    let data = json!({"stage": stage.as_str(), "token": ticket.token, "site": ticket.site});
    Event::default()
        .event("called")
        .id(revision.to_string())
        .data(data.to_string())
}
