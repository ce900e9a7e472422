//! NATS connection and the JetStream stream every service shares.

use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull};
use async_nats::jetstream::{self, stream};
use async_nats::{ConnectOptions, Event, ServerAddr};

use crate::config::NatsSettings;

/// Connects to the cluster. The client keeps reconnecting for ever, to whichever node answers,
/// and the call returns at once even when no node is up yet: the relay and the consumers wait
/// for the connection on their own, and `/readyz` reports it (without failing on it).
pub async fn connect(settings: &NatsSettings, name: &str) -> anyhow::Result<async_nats::Client> {
    let servers = settings
        .servers
        .iter()
        .map(|server| {
            server
                .parse::<ServerAddr>()
                .map_err(|e| anyhow::anyhow!("invalid NATS server address {server:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut options = ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(3))
        .event_callback(|event| async move {
            match event {
                Event::Connected => tracing::info!("connected to NATS"),
                Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
                Event::LameDuckMode => tracing::warn!("NATS server entered lame duck mode"),
                Event::SlowConsumer(sid) => tracing::warn!(sid, "slow NATS consumer"),
                other => tracing::info!(event = %other, "NATS connection event"),
            }
        });
    if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    Ok(options.connect(servers).await?)
}

pub fn jetstream(client: async_nats::Client) -> jetstream::Context {
    jetstream::new(client)
}

/// The stream's configuration: every `patient.*` subject, replicated, on disk.
pub fn stream_config(settings: &NatsSettings) -> stream::Config {
    stream::Config {
        name: settings.stream.clone(),
        description: Some("OPD patient events".into()),
        subjects: vec!["patient.>".into()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        num_replicas: settings.replicas,
        duplicate_window: settings.duplicate_window,
        max_age: settings.max_age,
        ..Default::default()
    }
}

/// Creates the stream if it is missing, and otherwise leaves it as it is.
///
/// Once the stream exists, its settings belong to whoever operates the cluster: a service never
/// updates it, neither at start-up nor when it binds again. An update from every process would
/// let one service started with other settings (a shorter `max_age` deletes unconsumed events
/// at once), or a new release's defaults, rewrite the shared stream, and revert what an operator
/// tuned. A difference from this service's settings is reported as an error log line carrying
/// `alert="stream-drift"`, and the service goes on with the live stream.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &NatsSettings,
) -> anyhow::Result<stream::Stream> {
    let wanted = stream_config(settings);
    let stream = js.get_or_create_stream(wanted.clone()).await?;
    let drift = stream_drift(&wanted, &stream.cached_info().config);
    report_drift("stream-drift", &wanted.name, &drift);
    Ok(stream)
}

/// The settings of a live stream that differ from `wanted`, as `name: live …, expected …`.
pub fn stream_drift(wanted: &stream::Config, live: &stream::Config) -> Vec<String> {
    differences(&[
        ("subjects", dbg(&live.subjects), dbg(&wanted.subjects)),
        (
            "replicas",
            dbg(&live.num_replicas),
            dbg(&wanted.num_replicas),
        ),
        ("max_age", dbg(&live.max_age), dbg(&wanted.max_age)),
        (
            "duplicate_window",
            dbg(&live.duplicate_window),
            dbg(&wanted.duplicate_window),
        ),
        ("storage", dbg(&live.storage), dbg(&wanted.storage)),
        ("retention", dbg(&live.retention), dbg(&wanted.retention)),
    ])
}

/// The settings of a live durable consumer that differ from `wanted`, the same way.
pub fn consumer_drift(wanted: &pull::Config, live: &consumer::Config) -> Vec<String> {
    differences(&[
        (
            "filter_subject",
            dbg(&live.filter_subject),
            dbg(&wanted.filter_subject),
        ),
        ("ack_policy", dbg(&live.ack_policy), dbg(&wanted.ack_policy)),
        ("ack_wait", dbg(&live.ack_wait), dbg(&wanted.ack_wait)),
        (
            "max_deliver",
            dbg(&live.max_deliver),
            dbg(&wanted.max_deliver),
        ),
    ])
}

/// Logs drift loudly (`alert` is `stream-drift` or `consumer-drift`); the caller goes on with
/// the live settings.
pub fn report_drift(alert: &'static str, name: &str, drift: &[String]) {
    if !drift.is_empty() {
        tracing::error!(
            alert,
            name,
            drift = %drift.join("; "),
            "live settings differ from this service's; using them as they are"
        );
    }
}

fn dbg(value: &impl std::fmt::Debug) -> String {
    format!("{value:?}")
}

fn differences(settings: &[(&str, String, String)]) -> Vec<String> {
    settings
        .iter()
        .filter(|(_, live, wanted)| live != wanted)
        .map(|(name, live, wanted)| format!("{name}: live {live}, expected {wanted}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_names_each_setting_that_differs() {
        let wanted = stream::Config {
            name: "PATIENT".into(),
            subjects: vec!["patient.>".into()],
            num_replicas: 3,
            max_age: Duration::from_secs(30 * 24 * 3600),
            ..Default::default()
        };
        assert!(stream_drift(&wanted, &wanted).is_empty());
        let live = stream::Config {
            max_age: Duration::from_secs(3600),
            num_replicas: 1,
            ..wanted.clone()
        };
        let drift = stream_drift(&wanted, &live);
        assert_eq!(drift.len(), 2, "{drift:?}");
        assert!(
            drift[0].starts_with("replicas: live 1, expected 3"),
            "{drift:?}"
        );
        assert!(drift[1].starts_with("max_age: live 3600s"), "{drift:?}");
    }
}
