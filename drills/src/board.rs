//! The three pending lists (inspection, treatment, release), read over and over by one poller
//! each, so that hundreds of journeys can wait on them without hundreds of requests. The
//! pollers are also the drill's eyes for repeats: a patient listed twice at once, or listed
//! again after the step that takes them off the list had succeeded.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::client::Client;

const POLL_EVERY: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Debug)]
pub enum Stage {
    Inspection,
    Treatment,
    Release,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Inspection, Stage::Treatment, Stage::Release];

    fn index(self) -> usize {
        self as usize
    }
}

/// One reading of a pending list: our patients on it.
#[derive(Default)]
struct Reading {
    listed: HashSet<i64>,
}

#[derive(Default)]
struct Seen {
    /// When each patient's step at each stage succeeded (they left that list then).
    left: [HashMap<i64, Instant>; 3],
    /// Patients seen twice on one list, or back on a list they had left.
    repeated: HashSet<i64>,
}

pub struct Board {
    readings: [watch::Sender<Reading>; 3],
    seen: Mutex<Seen>,
    patients: Range<i64>,
}

impl Board {
    pub fn new(patients: Range<i64>) -> Arc<Self> {
        Arc::new(Self {
            readings: std::array::from_fn(|_| watch::Sender::new(Reading::default())),
            seen: Mutex::new(Seen::default()),
            patients,
        })
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads `url` every 200 ms until the task is aborted.
    pub async fn poll(self: Arc<Self>, stage: Stage, url: String, client: Arc<Client>) {
        loop {
            let started = Instant::now();
            if let Some(list) = client.list(&url).await {
                let mut counts: HashMap<i64, usize> = HashMap::new();
                for entry in &list {
                    if let Some(id) = entry["id"].as_i64().filter(|id| self.patients.contains(id)) {
                        *counts.entry(id).or_default() += 1;
                    }
                }
                {
                    let mut seen = self.seen();
                    let repeats: Vec<i64> = counts
                        .iter()
                        .filter(|&(id, &count)| {
                            count > 1
                                || seen.left[stage.index()]
                                    .get(id)
                                    .is_some_and(|&left| left < started)
                        })
                        .map(|(&id, _)| id)
                        .collect();
                    seen.repeated.extend(repeats);
                }
                self.readings[stage.index()].send_replace(Reading {
                    listed: counts.into_keys().collect(),
                });
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Waits until patient `id` is on the stage's list.
    pub async fn arrival(&self, stage: Stage, id: i64) {
        let mut readings = self.readings[stage.index()].subscribe();
        // The sender lives as long as the board: this cannot fail while we hold `self`.
        let _ = readings
            .wait_for(|reading| reading.listed.contains(&id))
            .await;
    }

    /// Records that patient `id`'s step at this stage succeeded: from now on the list must not
    /// show them again.
    pub fn left(&self, stage: Stage, id: i64) {
        self.seen().left[stage.index()].insert(id, Instant::now());
    }

    pub fn repeated(&self) -> HashSet<i64> {
        self.seen().repeated.clone()
    }
}
