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

/// Creates the stream, or brings an existing one to the configuration above. Every service calls
/// this; the calls are idempotent.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &NatsSettings,
) -> anyhow::Result<stream::Stream> {
    js.create_or_update_stream(stream_config(settings)).await?;
    Ok(js.get_stream(&settings.stream).await?)
}
