//! The services on NATS beyond events: each instance registers with the NATS Services API
//! (ADR-32: `$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`, which `nats micro ls` and `opd-nats
//! services` read), and answers requests where a hospital needs an answer now rather than an
//! event: "is this patient with you, and where in your queue?".
//!
//! Two subjects carry the question, both JSON `{"id": 200}`:
//! - `opd.<service>.patient`: one service's answer (one instance of it answers);
//! - `opd.where`: the broadcast query of *Micro on NATS*. Every service listens, each in a
//!   queue group of its own, so that one instance of each answers; the asker ([`ask`]) gathers
//!   answers until a deadline and reports a service that did not answer as not answering, never
//!   as "not here".
//!
//! Every instance also publishes a [`heartbeat`] with its health.
//!
//! Answers are [`Located`]; errors are carried the ADR-32 way, in the `Nats-Service-Error` and
//! `Nats-Service-Error-Code` headers (400 for a request that does not parse, 503 when the
//! database cannot answer).

pub mod ask;
pub mod heartbeat;
pub(crate) mod responder;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{PatientId, Site};

/// The services that answer the broadcast query: a service missing from the answers is
/// reported as not answering.
pub const SERVICES: [&str; 4] = ["registration", "inspection", "treatment", "release"];

/// The broadcast subject every service answers.
pub const WHERE_SUBJECT: &str = "opd.where";

/// The subject of one service's answer.
pub fn patient_subject(service: &str) -> String {
    format!("opd.{service}.patient")
}

/// The question: where is this patient?
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Question {
    pub id: PatientId,
}

/// One service's answer to [`Question`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Located {
    pub service: String,
    pub id: i64,
    /// The patient at this service, or null when it has never heard of them.
    pub here: Option<Whereabouts>,
}

/// Where a patient is at one service: their latest visit there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "arrived_at": "2026-12-03T10:21:00Z", "waiting": true, "ahead": 2, "token": 3,
    "site": "hospital"
}))]
pub struct Whereabouts {
    /// When the patient reached this service on their latest visit.
    pub arrived_at: DateTime<Utc>,
    /// Waiting in this service's queue now.
    pub waiting: bool,
    /// While waiting: how many patients are before them in the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ahead: Option<i64>,
    /// When this service finished with them (inspected, treated, released).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_at: Option<DateTime<Utc>>,
    /// Their queue token today (registration and inspection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<i64>,
    /// The site that gave the token: tokens count per site and day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub site: Option<Site>,
}

/// How a service declares its answer: its own tables, read for one patient, by an instance
/// serving the given site.
pub type Locate = fn(sqlx::PgPool, Site, PatientId) -> LocateFuture;

/// What [`Locate`] returns.
pub type LocateFuture =
    futures::future::BoxFuture<'static, Result<Option<Whereabouts>, sqlx::Error>>;
