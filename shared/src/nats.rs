//! NATS connection and the JetStream stream every service shares.

use std::time::Duration;

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
    if !drift.is_empty() {
        tracing::error!(
            alert = "stream-drift",
            stream = %wanted.name,
            drift = %drift.join("; "),
            "the stream's live settings differ from this service's; leaving them as they are"
        );
    }
    Ok(stream)
}

/// The settings of `live` that differ from `wanted`, as `name: live …, expected …`.
pub fn stream_drift(wanted: &stream::Config, live: &stream::Config) -> Vec<String> {
    let mut drift = Vec::new();
    let mut compare = |name: &str, live: String, wanted: String| {
        if live != wanted {
            drift.push(format!("{name}: live {live}, expected {wanted}"));
        }
    };
    compare(
        "subjects",
        format!("{:?}", live.subjects),
        format!("{:?}", wanted.subjects),
    );
    compare(
        "replicas",
        live.num_replicas.to_string(),
        wanted.num_replicas.to_string(),
    );
    compare(
        "max_age",
        format!("{:?}", live.max_age),
        format!("{:?}", wanted.max_age),
    );
    compare(
        "duplicate_window",
        format!("{:?}", live.duplicate_window),
        format!("{:?}", wanted.duplicate_window),
    );
    compare(
        "storage",
        format!("{:?}", live.storage),
        format!("{:?}", wanted.storage),
    );
    compare(
        "retention",
        format!("{:?}", live.retention),
        format!("{:?}", wanted.retention),
    );
    drift
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
