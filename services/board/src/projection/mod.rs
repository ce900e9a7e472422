//! The board's projection: the patient stream folded into the state of the waiting room, kept
//! in the `OPD_BOARD` key-value bucket ([`opd_shared::events::BOARD_BUCKET`]).
//!
//! Two kinds of key:
//! - `visit.<patient id>`: the patient's visit of the day, its token and the stage it waits
//!   for ([`Visit`]); a visit that has left the OPD stays, as [`Stage::Left`], until the bucket
//!   forgets it (two days);
//! - `called.<stage>`: the token that last left that stage's queue, the one being seen
//!   now ([`Called`]).
//!
//! Every value carries the stream sequence of the event that wrote it. The stream delivers
//! events in order, so a value that already carries an event's sequence (or a later one) has
//! seen it: a redelivered event changes nothing, key by key, and a change reaches the board's
//! screens exactly once. [`Projection`] is the pure fold; [`projector`] runs it against
//! JetStream.

pub mod projector;

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Where a visit is: waiting for one of the three stages, or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Inspection,
    Treatment,
    Release,
    /// Discharged or admitted: off the board.
    Left,
}

impl Stage {
    /// The stages a patient waits for, in the order of the visit.
    pub const WAITING: [Stage; 3] = [Stage::Inspection, Stage::Treatment, Stage::Release];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Inspection => "inspection",
            Stage::Treatment => "treatment",
            Stage::Release => "release",
            Stage::Left => "left",
        }
    }

    fn after(self) -> Stage {
        match self {
            Stage::Inspection => Stage::Treatment,
            Stage::Treatment => Stage::Release,
            Stage::Release | Stage::Left => Stage::Left,
        }
    }

    fn parse(text: &str) -> Option<Stage> {
        Stage::WAITING
            .into_iter()
            .chain([Stage::Left])
            .find(|stage| stage.as_str() == text)
    }
}

/// A visit, under `visit.<patient id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    /// The UTC day of the registration: the day the token counts in.
    pub day: NaiveDate,
    pub token: i64,
    pub stage: Stage,
    /// The stream sequence of the event that put it in this stage: its place in the stage's
    /// queue, and how a redelivered event is recognised.
    pub seq: u64,
}

/// The token a stage called last, under `called.<stage>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Called {
    pub day: NaiveDate,
    pub token: i64,
    pub seq: u64,
}

/// The value of a key of the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Visit(Visit),
    Called(Stage, Called),
}

impl Entry {
    /// The stream sequence of the event that wrote it.
    pub fn seq(&self) -> u64 {
        match self {
            Entry::Visit(visit) => visit.seq,
            Entry::Called(_, called) => called.seq,
        }
    }

    /// Reads the value stored under `key`; `None` for a key or value this version does not
    /// know (it is left alone).
    pub fn parse(key: &str, value: &[u8]) -> Option<Entry> {
        if key.starts_with("visit.") {
            serde_json::from_slice(value).ok().map(Entry::Visit)
        } else {
            let stage = Stage::parse(key.strip_prefix("called.")?)?;
            serde_json::from_slice(value)
                .ok()
                .map(|called| Entry::Called(stage, called))
        }
    }

    pub fn to_json(&self) -> Result<bytes::Bytes, serde_json::Error> {
        match self {
            Entry::Visit(visit) => serde_json::to_vec(visit),
            Entry::Called(_, called) => serde_json::to_vec(called),
        }
        .map(bytes::Bytes::from)
    }
}

pub fn visit_key(patient: i64) -> String {
    format!("visit.{patient}")
}

pub fn called_key(stage: Stage) -> String {
    format!("called.{}", stage.as_str())
}

/// What an event of the stream does to the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `patient.register`: a new visit waits for inspection.
    Registered {
        patient: i64,
        token: i64,
        day: NaiveDate,
    },
    /// `patient.treatment`, `.release`, `.discharge`, `.admission`: the visit leaves the queue
    /// of `from` (its token is called) for the next one.
    Left { patient: i64, from: Stage },
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// These keys changed.
    Changed(Vec<String>),
    /// Nothing: it had been applied before, or its visit is not on the board (registered before
    /// the board existed, or already moved on); the reason says which.
    Unchanged(&'static str),
}

/// A key's value as the bucket holds it, and its revision there (0: not in the bucket).
#[derive(Debug, Clone)]
struct Stored {
    entry: Entry,
    revision: u64,
}

/// A write to make: `key` becomes `entry`, provided the bucket still holds `expected` (its
/// revision when this projection read or last wrote it; 0 for a key it has never seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub key: String,
    pub entry: Entry,
    pub expected: u64,
}

/// The board's state in memory, as the bucket holds it plus the changes not yet written.
#[derive(Debug, Default)]
pub struct Projection {
    entries: HashMap<String, Stored>,
    /// Keys changed since the last [`Projection::writes`], with their revision before.
    dirty: HashMap<String, u64>,
}

impl Projection {
    /// Takes a value read from the bucket.
    pub fn load(&mut self, key: String, revision: u64, entry: Entry) {
        self.entries.insert(key, Stored { entry, revision });
    }

    /// Applies the event at stream sequence `seq`.
    pub fn apply(&mut self, seq: u64, change: Change) -> Applied {
        match change {
            Change::Registered {
                patient,
                token,
                day,
            } => {
                let key = visit_key(patient);
                if self.visit(&key).is_some_and(|visit| visit.seq >= seq) {
                    return Applied::Unchanged("applied before");
                }
                let visit = Visit {
                    day,
                    token,
                    stage: Stage::Inspection,
                    seq,
                };
                self.set(key.clone(), Entry::Visit(visit));
                Applied::Changed(vec![key])
            }
            Change::Left { patient, from } => {
                let key = visit_key(patient);
                let Some(visit) = self.visit(&key).cloned() else {
                    return Applied::Unchanged("the visit is not on the board");
                };
                let mut changed = Vec::new();
                if visit.seq > seq {
                    return Applied::Unchanged("applied before");
                }
                // Equal: this very event moved it, and its call may not be written yet.
                if visit.seq < seq {
                    if visit.stage != from {
                        return Applied::Unchanged("the visit is not waiting for that stage");
                    }
                    let moved = Visit {
                        stage: from.after(),
                        seq,
                        ..visit.clone()
                    };
                    self.set(key.clone(), Entry::Visit(moved));
                    changed.push(key);
                }
                let call = called_key(from);
                let called_before = match self.entries.get(&call) {
                    Some(Stored {
                        entry: Entry::Called(_, called),
                        ..
                    }) => called.seq >= seq,
                    _ => false,
                };
                if !called_before {
                    let called = Called {
                        day: visit.day,
                        token: visit.token,
                        seq,
                    };
                    self.set(call.clone(), Entry::Called(from, called));
                    changed.push(call);
                }
                if changed.is_empty() {
                    Applied::Unchanged("applied before")
                } else {
                    Applied::Changed(changed)
                }
            }
        }
    }

    /// The writes that make the bucket hold what this projection holds, one per changed key,
    /// in the order of the events that changed them: the bucket's revisions then follow the
    /// stream's order, and a screen that appends each arrival to its queue keeps the queue in
    /// order.
    pub fn writes(&self) -> Vec<Write> {
        let mut writes: Vec<Write> = self
            .dirty
            .iter()
            .filter_map(|(key, expected)| {
                let stored = self.entries.get(key)?;
                Some(Write {
                    key: key.clone(),
                    entry: stored.entry.clone(),
                    expected: *expected,
                })
            })
            .collect();
        writes.sort_by(|a, b| (a.entry.seq(), &a.key).cmp(&(b.entry.seq(), &b.key)));
        writes
    }

    /// The bucket took the write of `key` as `revision`.
    pub fn written(&mut self, key: &str, revision: u64) {
        self.dirty.remove(key);
        if let Some(stored) = self.entries.get_mut(key) {
            stored.revision = revision;
        }
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn visit(&self, key: &str) -> Option<&Visit> {
        match self.entries.get(key) {
            Some(Stored {
                entry: Entry::Visit(visit),
                ..
            }) => Some(visit),
            _ => None,
        }
    }

    fn set(&mut self, key: String, entry: Entry) {
        let revision = self.entries.get(&key).map_or(0, |stored| stored.revision);
        self.dirty.entry(key.clone()).or_insert(revision);
        self.entries.insert(key, Stored { entry, revision });
    }
}

#[cfg(test)]
mod tests;
