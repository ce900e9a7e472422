//! The board's projection: the patient stream folded into the state of the waiting room, kept
//! in the `OPD_BOARD` key-value bucket ([`opd_shared::events::BOARD_BUCKET`]), one key per
//! patient: `visit.<patient id>` ([`Visit`]).
//!
//! A visit holds, for its patient, the stream sequence of the latest registration (with its
//! token and day) and of the latest departure from each queue. Each event only ever raises one
//! of these to its own sequence, so merging events is commutative and idempotent: any order,
//! any number of times, by any number of projectors, ends in the same value, and an event
//! already merged changes nothing (so nothing reaches the screens twice). Where a visit waits,
//! in which place, and which token each desk called last, are read off these sequences
//! ([`Visit::stage`], [`Visit::joined`], [`Visit::left_at`]); nothing depends on the order in
//! which the events arrive. [`projector`] runs the merge against JetStream.

pub mod projector;
pub mod written;

use chrono::NaiveDate;
use opd_shared::domain::Site;
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

    /// Its place in [`Stage::WAITING`] (`Left` has none).
    fn index(self) -> Option<usize> {
        Stage::WAITING.iter().position(|stage| *stage == self)
    }
}

/// A patient's latest visit as the events told it, under `visit.<patient id>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    /// The stream sequence of the latest registration; 0 while none has been merged (a
    /// departure can be merged first).
    pub registered: u64,
    /// That registration's day (UTC: the day the token counts in), token, and the site that
    /// gave it (values written before there were sites have none: the hospital's).
    pub day: Option<NaiveDate>,
    pub token: i64,
    #[serde(default)]
    pub site: Site,
    /// The stream sequences of the latest departures from inspection, treatment and release
    /// (0: none).
    pub left: [u64; 3],
    /// The latest departure from each queue whose token is known, kept when a new visit
    /// begins: what the board shows as that desk's call.
    #[serde(default)]
    pub calls: [Option<Call>; 3],
    /// The registration before the latest one: replicas merge a patient's events in any
    /// order, and a departure merged after the next registration still belongs to this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Registration>,
}

/// A registration a departure can belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub seq: u64,
    pub token: i64,
    pub site: Site,
    pub day: NaiveDate,
}

/// A departure from a queue, with the token that left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub seq: u64,
    pub token: i64,
    #[serde(default)]
    pub site: Site,
    pub day: NaiveDate,
}

/// What an event of the stream does to its patient's visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `patient.register`: a new visit waits for inspection.
    Registered {
        patient: i64,
        token: i64,
        site: Site,
        day: NaiveDate,
    },
    /// `patient.treatment`, `.release`, `.discharge`, `.admission`: the visit leaves the queue
    /// of `from` (its token is called) for the next one.
    Left { patient: i64, from: Stage },
}

impl Change {
    pub fn patient(&self) -> i64 {
        match self {
            Change::Registered { patient, .. } | Change::Left { patient, .. } => *patient,
        }
    }
}

impl Visit {
    /// Merges the event at stream sequence `seq`; whether the visit changed.
    pub fn merge(&mut self, seq: u64, change: Change) -> bool {
        let changed = self.merge_sequences(seq, change);
        // A departure whose registration is known is a call: kept, the latest one per queue.
        // The same departure is written again when a registration merged since tells better
        // whose it was, so the result does not depend on the order of the merges.
        for index in 0..self.left.len() {
            let left = self.left[index];
            if let Some(call) = self.call_at(left)
                && self.calls[index]
                    .as_ref()
                    .is_none_or(|kept| kept.seq <= left)
            {
                self.calls[index] = Some(call);
            }
        }
        changed
    }

    /// The call a departure at `left` makes: the token of the registration just before it,
    /// if that is the latest or the previous one.
    fn call_at(&self, left: u64) -> Option<Call> {
        if left == 0 {
            return None;
        }
        if self.registered > 0 && left > self.registered {
            let day = self.day?;
            return Some(Call {
                seq: left,
                token: self.token,
                site: self.site.clone(),
                day,
            });
        }
        self.previous
            .as_ref()
            .filter(|previous| left > previous.seq)
            .map(|previous| Call {
                seq: left,
                token: previous.token,
                site: previous.site.clone(),
                day: previous.day,
            })
    }

    fn merge_sequences(&mut self, seq: u64, change: Change) -> bool {
        match change {
            Change::Registered {
                token, site, day, ..
            } => {
                let registration = Registration {
                    seq,
                    token,
                    site,
                    day,
                };
                if seq <= self.registered {
                    // An older registration merged late: it may be the one before the latest.
                    if seq < self.registered
                        && self
                            .previous
                            .as_ref()
                            .is_none_or(|previous| previous.seq < seq)
                    {
                        self.previous = Some(registration);
                        return true;
                    }
                    return false;
                }
                if let Some(day) = self.day.filter(|_| self.registered > 0) {
                    self.previous = Some(Registration {
                        seq: self.registered,
                        token: self.token,
                        site: self.site.clone(),
                        day,
                    });
                }
                let Registration {
                    token, site, day, ..
                } = registration;
                self.registered = seq;
                self.token = token;
                self.site = site;
                self.day = Some(day);
                true
            }
            Change::Left { from, .. } => {
                let Some(index) = from.index() else {
                    return false;
                };
                if seq <= self.left[index] {
                    return false;
                }
                self.left[index] = seq;
                true
            }
        }
    }

    /// Where the visit is now: past the last queue it left since its registration; `None`
    /// while no registration has been merged (its token is not known).
    pub fn stage(&self) -> Option<Stage> {
        if self.registered == 0 {
            return None;
        }
        Some(
            Stage::WAITING
                .iter()
                .rev()
                .find(|stage| self.left_at(**stage).is_some())
                .map_or(Stage::Inspection, |stage| stage.after()),
        )
    }

    /// When the visit joined the queue it waits in: its place in that queue.
    pub fn joined(&self) -> u64 {
        match self.stage() {
            Some(Stage::Treatment) => self.left[0],
            Some(Stage::Release) => self.left[1],
            _ => self.registered,
        }
    }

    /// When this visit left the queue of `stage`, if it did (a departure older than the
    /// registration was the previous visit's).
    pub fn left_at(&self, stage: Stage) -> Option<u64> {
        let left = self.left[stage.index()?];
        (self.registered > 0 && left > self.registered).then_some(left)
    }

    pub fn to_json(&self) -> Result<bytes::Bytes, serde_json::Error> {
        serde_json::to_vec(self).map(bytes::Bytes::from)
    }

    /// The visit stored under `key`; `None` for another key, or a value that does not read.
    pub fn parse(key: &str, value: &[u8]) -> Option<Visit> {
        key.starts_with(KEY_PREFIX)
            .then(|| serde_json::from_slice(value).ok())
            .flatten()
    }
}

const KEY_PREFIX: &str = "visit.";

/// The key of `patient`'s visit.
pub fn visit_key(patient: i64) -> String {
    format!("{KEY_PREFIX}{patient}")
}

/// The patient whose visit `key` holds; `None` for any other key.
pub fn patient_of(key: &str) -> Option<i64> {
    key.strip_prefix(KEY_PREFIX)?.parse().ok()
}

#[cfg(test)]
mod tests;
