//! The control plane: an operator steers running instances with messages, without restarting
//! anything (*Integration patterns for microservices*: state changed by a controller).
//!
//! Every instance listens on two subjects, neither in a queue group, so that a command reaches
//! each instance it addresses:
//! - `opd.control.<service>`: every instance of the service;
//! - `opd.control.<service>.<instance>`: one instance (its id, as in its heartbeat and its
//!   Services API metadata).
//!
//! A command is a request ([`Command`], JSON); each instance it reached answers on the reply
//! subject with an [`Ack`] that says what it did and the state it is in now, and logs it. The
//! sender gathers acknowledgements until a deadline (`opd-nats control`), and an instance that
//! is alive (it beats) but did not answer is reported as such. Only the administrator's identity
//! may publish on `opd.control.>`: a service can neither command another nor itself.
//!
//! The commands:
//! - `pause` / `resume`: the service's durable consumer, through JetStream's consumer pause API
//!   (the server stops delivering; messages wait in the stream). The durable consumer is shared
//!   by every instance of the service, so these address the service, not one instance. A pause
//!   always has an end (`until`): a pause forgotten by its operator ends by itself.
//! - `maintenance`: on, the instance's state-changing routes answer 503 with `Retry-After`,
//!   reads still work ([`state::Control`]); off, they work again. Per process: an instance that
//!   restarts starts out of maintenance.
//! - `log-filter`: the process's log filter (`RUST_LOG` syntax), until it restarts.
//!
//! Their effect shows in `/readyz`, the heartbeat and the metrics.

pub(crate) mod listener;
pub mod state;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Commands are published under it, then the service's name (and an instance's id).
pub const SUBJECT_PREFIX: &str = "opd.control";

/// The subject that reaches every instance of `service`, or the one instance `instance`.
pub fn subject(service: &str, instance: Option<&str>) -> String {
    match instance {
        Some(instance) => format!("{SUBJECT_PREFIX}.{service}.{instance}"),
        None => format!("{SUBJECT_PREFIX}.{service}"),
    }
}

/// What an operator asks of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// Stop the delivery of the service's durable consumer until `until` (or a `resume`).
    Pause { until: DateTime<Utc> },
    /// Deliver again.
    Resume,
    /// Turn maintenance on or off; while on, a state-changing request is answered 503 with
    /// `Retry-After: retry_after_secs`.
    Maintenance {
        on: bool,
        #[serde(default = "default_retry_after")]
        retry_after_secs: u64,
        #[serde(default)]
        reason: String,
    },
    /// Replace the log filter (`RUST_LOG` syntax).
    LogFilter { filter: String },
}

fn default_retry_after() -> u64 {
    60
}

impl Command {
    /// Its name, as on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Pause { .. } => "pause",
            Command::Resume => "resume",
            Command::Maintenance { .. } => "maintenance",
            Command::LogFilter { .. } => "log-filter",
        }
    }
}

/// One instance's answer to a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub service: String,
    pub instance: String,
    /// The command's name, or `unknown` for a request that did not parse.
    pub command: String,
    /// Whether the command took effect.
    pub ok: bool,
    /// What the instance did, or why it could not.
    pub detail: String,
    /// The instance's state once the command was handled.
    pub state: InstanceState,
}

/// What the control plane steers, as one instance sees it now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceState {
    /// Whether state-changing routes are refused.
    pub maintenance: bool,
    /// The log filter in force; null where the process has none it can change.
    pub log_filter: Option<String>,
    /// Each durable consumer's state (`consuming`, `paused`, `binding`).
    pub consumers: BTreeMap<String, String>,
}
