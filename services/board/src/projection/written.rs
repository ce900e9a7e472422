//! The visits this instance's projector wrote last, each with the revision its write got.
//!
//! A patient's events come minutes apart, one stage after another; with the visit and its
//! revision at hand, the projector merges the next event into them and writes on that revision
//! without reading the visit first. The bucket has the last word: the write names the revision
//! (`Nats-Expected-Last-Subject-Sequence`), so if another replica wrote the visit since, or
//! its key expired, the bucket refuses it and the projector reads the visit as if it had
//! never known it.
//!
//! A revision means something in one bucket only: a bucket made anew (deleted, then created
//! again by `opd-nats stream` to rebuild the board) counts from 1 again, and a held revision
//! could name another write there. So what is held belongs to the bucket it was written to,
//! known by its stream's creation time: binding records it, and before a batch the projector
//! confirms it if it has not for [`WrittenVisits::CONFIRM_EVERY`]; a bucket made anew empties
//! what is held. A bucket deleted under a working board is caught sooner, by the first write
//! that finds no bucket (which binds again).

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::datetime::DateTime;
use lru::LruCache;

use super::Visit;

/// A visit as it is in the bucket at `revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub visit: Visit,
    pub revision: u64,
}

/// The last [`WrittenVisits::CAPACITY`] visits written or read, the least recently used
/// forgotten first, and the bucket they are in.
pub(crate) struct WrittenVisits(Mutex<Held>);

struct Held {
    visits: LruCache<i64, Known>,
    /// The creation time of the bucket's stream, and when it was last confirmed; none before
    /// the first binding.
    bucket: Option<(DateTime, Instant)>,
}

impl WrittenVisits {
    /// Enough for the visits in progress at a busy hour (at 200 patients a second, the
    /// visits of the last twenty seconds), a few hundred kilobytes.
    pub(crate) const CAPACITY: NonZeroUsize = NonZeroUsize::new(4096).unwrap();

    /// How long the bucket is taken to be the one bound to without asking again: one request
    /// a second at most, against the many writes a busy second brings.
    pub(crate) const CONFIRM_EVERY: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        Self(Mutex::new(Held {
            visits: LruCache::new(Self::CAPACITY),
            bucket: None,
        }))
    }

    /// `patient`'s visit as last seen, if it is still held.
    pub(crate) fn get(&self, patient: i64) -> Option<Known> {
        self.lock().visits.get(&patient).cloned()
    }

    pub(crate) fn put(&self, patient: i64, known: Known) {
        self.lock().visits.put(patient, known);
    }

    /// Starts over with the bucket whose stream was created at `created`.
    pub(crate) fn bind(&self, created: DateTime) {
        let mut held = self.lock();
        held.visits.clear();
        held.bucket = Some((created, Instant::now()));
    }

    /// Whether the bucket should be confirmed before what is held is written on.
    pub(crate) fn unconfirmed(&self) -> bool {
        self.lock()
            .bucket
            .is_none_or(|(_, confirmed)| confirmed.elapsed() >= Self::CONFIRM_EVERY)
    }

    /// The bucket's stream was created at `created`: whether that is the bucket bound to. If it
    /// is not, what is held is forgotten and the new bucket bound.
    pub(crate) fn confirm(&self, created: DateTime) -> bool {
        let mut held = self.lock();
        let same = held.bucket.is_some_and(|(bound, _)| bound == created);
        if !same {
            held.visits.clear();
        }
        held.bucket = Some((created, Instant::now()));
        same
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // Nothing panics while holding the lock; a poisoned one holds values as good as any.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
