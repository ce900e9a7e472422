//! What the control plane has set in this instance, shared by the listener that sets it and
//! the parts that obey it (the maintenance layer, `/readyz`, the heartbeat, the metrics).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// This instance's controlled state. Cheap to clone: every clone is the same state.
#[derive(Clone, Default)]
pub struct Control(Arc<Mutex<Option<Maintenance>>>);

/// An instance in maintenance: since when, why, and when clients should try again.
#[derive(Debug, Clone, PartialEq)]
pub struct Maintenance {
    pub since: DateTime<Utc>,
    pub retry_after: Duration,
    pub reason: String,
}

impl Control {
    /// The maintenance in force, if any.
    pub fn maintenance(&self) -> Option<Maintenance> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts the instance into maintenance (a second call updates the reason and the delay,
    /// keeping `since`), or takes it out with None.
    pub fn set_maintenance(&self, maintenance: Option<Maintenance>) {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *current = match (current.take(), maintenance) {
            (Some(old), Some(new)) => Some(Maintenance {
                since: old.since,
                ..new
            }),
            (_, new) => new,
        };
    }
}
