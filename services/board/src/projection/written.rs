//! The visits this instance's projector wrote last, each with the revision its write got.
//!
//! A patient's events come minutes apart, one stage after another; with the visit and its
//! revision at hand, the projector merges the next event into them and writes on that revision
//! without reading the visit first. The bucket has the last word: the write names the revision
//! (`Nats-Expected-Last-Subject-Sequence`), so if another replica wrote the visit since, or
//! its key expired, the bucket refuses it and the projector reads the visit as if it had
//! never known it.
//!
//! What it takes on trust is that the bucket is the one the projector bound to: a bucket made
//! anew counts revisions from 1, so a held revision could name another write. Binding empties
//! what is held, and any failed write binds again, so a bucket deleted under a working board
//! is caught by its next write; one deleted and made again while an instance writes nothing is
//! not: an operator who makes the bucket again stops the board's instances first.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use super::Visit;

/// A visit as it is in the bucket at `revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub visit: Visit,
    pub revision: u64,
}

/// The last [`WrittenVisits::CAPACITY`] visits written or read, the least recently used
/// forgotten first.
pub(crate) struct WrittenVisits(Mutex<LruCache<i64, Known>>);

impl WrittenVisits {
    /// Enough for the visits in progress at a busy hour (at 200 patients a second, the
    /// visits of the last twenty seconds), a few hundred kilobytes.
    pub(crate) const CAPACITY: NonZeroUsize = NonZeroUsize::new(4096).unwrap();

    pub(crate) fn new() -> Self {
        Self(Mutex::new(LruCache::new(Self::CAPACITY)))
    }

    /// `patient`'s visit as last seen, if it is still held.
    pub(crate) fn get(&self, patient: i64) -> Option<Known> {
        self.lock().get(&patient).cloned()
    }

    pub(crate) fn put(&self, patient: i64, known: Known) {
        self.lock().put(patient, known);
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<i64, Known>> {
        // Nothing panics while holding the lock; a poisoned one holds values as good as any.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
