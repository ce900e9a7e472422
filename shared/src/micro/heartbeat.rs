//! The heartbeat: every instance says, at a steady interval, that it is alive and how it is
//! (database, NATS, each consumer, version, maintenance, log filter). Fire and forget over core NATS on
//! `opd.heartbeat.<service>.<instance>`; the presence stream (`OPD_HEARTBEATS`, created by the
//! stream's owner) keeps the last one of each instance for a bounded time, so an instance that
//! stops beating leaves the view by itself (`opd-nats status`).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::http::health::Readiness;
use crate::service::Service;

/// Heartbeats are published under it, then the service's name and the instance's id.
pub const SUBJECT_PREFIX: &str = "opd.heartbeat";

/// One heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub service: String,
    /// This process: also its `instance` metadata in the Services API.
    pub instance: String,
    pub version: String,
    pub host: String,
    pub at: DateTime<Utc>,
    /// The next one is due this long after `at`.
    pub interval_ms: u64,
    /// Whether its database answered just now.
    pub database: bool,
    /// Each durable consumer's state (`consuming`, `binding`).
    pub consumers: BTreeMap<String, String>,
    /// Whether bearer tokens are checked (`auth.enabled`).
    pub authentication: bool,
    /// Whether an operator has put it into maintenance (state-changing routes answer 503).
    #[serde(default)]
    pub maintenance: bool,
    /// The log filter in force, where the process has one it can change.
    #[serde(default)]
    pub log_filter: Option<String>,
}

/// The subject of `instance` of `service`.
pub fn subject(service: &str, instance: &str) -> String {
    format!("{SUBJECT_PREFIX}.{service}.{instance}")
}

/// Publishes a heartbeat every `interval` until `shutdown`.
pub(crate) async fn run(
    service: &'static Service,
    readiness: Readiness,
    instance: String,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let subject = subject(service.name, &instance);
    // Read once: the host does not change while the process runs.
    let host = crate::micro::responder::host_name();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let beat = Heartbeat {
            service: service.name.to_owned(),
            instance: instance.clone(),
            version: service.version.to_owned(),
            host: host.clone(),
            at: Utc::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            database: readiness.database_answers().await,
            consumers: readiness.consumers.states(),
            authentication: readiness.authentication,
            maintenance: readiness.control.maintenance().is_some(),
            log_filter: crate::infra::telemetry::log_filter(),
        };
        let Ok(payload) = serde_json::to_vec(&beat) else {
            continue;
        };
        // Core NATS: a beat that cannot go out now is worthless later. While disconnected the
        // client buffers a few and the rest are dropped, which is what a missed beat means.
        if let Err(error) = readiness
            .nats
            .publish(subject.clone(), payload.into())
            .await
        {
            tracing::debug!(%error, "heartbeat not sent");
        }
    }
}
