//! `/healthz` (the process is alive) and `/readyz` (it can serve requests: its database answers).
//! Orchestrators restart on the first and route traffic on the second.
//!
//! NATS is not part of readiness: while it is unreachable every write still succeeds, its
//! events waiting in the outbox, and every read works. Taking the API out of rotation then would
//! turn a broker outage into a full outage. `/readyz` reports NATS in its body instead, and
//! each durable consumer's state: `consuming`, `paused` while an operator holds it back (the
//! control plane), or `binding` while it cannot reach its consumer on the stream (at start,
//! after the cluster was down, after missed heartbeats). Maintenance and the log filter, which
//! the control plane sets, are reported too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

use crate::control::state::Control;

use crate::http::problem::Problem;

impl Readiness {
    /// `/readyz`'s account of maintenance: `off`, or since when and why.
    fn maintenance(&self) -> serde_json::Value {
        match self.control.maintenance() {
            None => json!("off"),
            Some(maintenance) => json!({
                "since": maintenance.since,
                "reason": maintenance.reason,
                "retry_after_secs": maintenance.retry_after.as_secs(),
            }),
        }
    }

    /// Whether the database answers a trivial query within two seconds.
    pub async fn database_answers(&self) -> bool {
        tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query("select 1").execute(&self.pool),
        )
        .await
        .is_ok_and(|result| result.is_ok())
    }
}

#[derive(Clone)]
pub struct Readiness {
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub consumers: Consumers,
    /// Whether bearer tokens are checked (`auth.enabled`); `/readyz` says so either way.
    pub authentication: bool,
    pub control: Control,
}

/// What each durable consumer of the service is doing, as its task last reported, and until
/// when an operator paused it.
#[derive(Clone, Default)]
pub struct Consumers(Arc<Mutex<BTreeMap<String, Entry>>>);

#[derive(Clone, Copy)]
struct Entry {
    state: ConsumerState,
    paused_until: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerState {
    /// Not bound to its consumer on the stream (yet, or any more); it keeps trying.
    Binding,
    /// Bound, and receiving messages or heartbeats.
    Consuming,
}

impl Consumers {
    pub fn set(&self, durable: &str, state: ConsumerState) {
        let mut entries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .entry(durable.to_owned())
            .and_modify(|entry| entry.state = state)
            .or_insert(Entry {
                state,
                paused_until: None,
            });
    }

    /// Records that JetStream holds `durable`'s messages back until `until` (None: it delivers).
    pub fn set_paused(&self, durable: &str, until: Option<DateTime<Utc>>) {
        let mut entries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .entry(durable.to_owned())
            .and_modify(|entry| entry.paused_until = until)
            .or_insert(Entry {
                state: ConsumerState::Binding,
                paused_until: until,
            });
    }

    /// Each consumer's state, as text: `binding`, `consuming`, or `paused` while bound and
    /// held back (a pause ends by itself at its deadline).
    pub fn states(&self) -> BTreeMap<String, String> {
        let now = Utc::now();
        let entries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .map(|(durable, entry)| {
                let paused = entry.paused_until.is_some_and(|until| until > now);
                let state = match entry.state {
                    ConsumerState::Binding => "binding",
                    ConsumerState::Consuming if paused => "paused",
                    ConsumerState::Consuming => "consuming",
                };
                (durable.clone(), state.to_owned())
            })
            .collect()
    }
}

pub fn routes(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, description = "Alive", body = Object,
        example = json!({ "status": "alive" }))))]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "alive" }))
}

/// The service can serve requests: its database answers. NATS is reported, not required:
/// without it, events wait in the outbox.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready; `nats` says whether events flow right now",
            body = Object,
            example = json!({ "status": "ready", "database": "up", "nats": "down",
                "consumers": { "inspection-patient-register": "binding" },
                "authentication": "on", "maintenance": "off", "log_filter": "info" })),
        (status = 503, description = "The database is down (`/problems/not-ready`)",
            body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn readyz(State(readiness): State<Readiness>) -> Response {
    let database = readiness.database_answers().await;
    let nats = readiness.nats.connection_state() == async_nats::connection::State::Connected;
    let status = |up: bool| if up { "up" } else { "down" };
    if database {
        Json(json!({
            "status": "ready",
            "database": "up",
            "nats": status(nats),
            "consumers": readiness.consumers.states(),
            "authentication": if readiness.authentication { "on" } else { "OFF: anyone may call every route (auth.enabled = false)" },
            "maintenance": readiness.maintenance(),
            "log_filter": crate::infra::telemetry::log_filter(),
        }))
        .into_response()
    } else {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            format!("database down, nats {}", status(nats)),
        )
        .into_response()
    }
}
