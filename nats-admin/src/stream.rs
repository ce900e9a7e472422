//! The `PATIENT` stream, as its owner creates it. Its settings are the owner's alone: the
//! services only use the stream, and check what they need of it when they open it
//! (`opd_shared::infra::nats::StreamNeed`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use opd_shared::infra::config::NatsSettings;
use opd_shared::infra::nats::{dbg, differences, report_drift};
use serde::{Deserialize, Serialize};

/// The stream's settings: `[stream]` in the configuration file, `OPD_STREAM__*` in the
/// environment. Its name is `nats.stream`, which the services read too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSettings {
    /// Copies of every event, each on another node. Three on the three-node cluster.
    pub replicas: usize,
    /// JetStream drops a second message with the same `Nats-Msg-Id` inside this window. The
    /// relays publish again what they published in their `outbox.republish_window` (30 s):
    /// keep this longer.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// Events older than this leave the stream, consumed or not. The consumers keep handled
    /// ids for `consumer.inbox_retention` (30 days): keep this no longer.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            replicas: 3,
            duplicate_window: Duration::from_secs(10 * 60),
            max_age: Duration::from_secs(30 * 24 * 60 * 60),
        }
    }
}

/// The part of the configuration this module reads.
#[derive(Serialize, Deserialize)]
struct Layered {
    stream: StreamSettings,
}

impl StreamSettings {
    /// The defaults, then the configuration file (`OPD_CONFIG_FILE`, else `opd.toml`), then
    /// `OPD_STREAM__*` variables: the layering the services use.
    pub fn load() -> Result<Self, config::ConfigError> {
        let file = opd_shared::infra::config::config_file();
        Self::layered(file.as_deref(), None)
    }

    /// [`StreamSettings::load`] with `environment` in place of the process environment.
    pub fn layered(
        file: Option<&Path>,
        environment: Option<HashMap<String, String>>,
    ) -> Result<Self, config::ConfigError> {
        let defaults = Layered {
            stream: Self::default(),
        };
        let settings = opd_shared::infra::config::layered(&defaults, file, environment)?.stream;
        if settings.replicas == 0 {
            return Err(config::ConfigError::Message(
                "stream.replicas must be at least 1".into(),
            ));
        }
        // JetStream refuses it too, but only once the stream is created, and less plainly.
        if settings.duplicate_window > settings.max_age {
            return Err(config::ConfigError::Message(format!(
                "stream.duplicate_window ({:?}) must not be longer than stream.max_age ({:?})",
                settings.duplicate_window, settings.max_age
            )));
        }
        Ok(settings)
    }

    /// The defaults with one replica per node of a cluster of `nodes` (the tests' servers).
    pub fn for_nodes(nodes: usize) -> Self {
        Self {
            replicas: nodes,
            ..Self::default()
        }
    }

    /// The stream's configuration: every `patient.*` subject, replicated, on disk.
    pub fn config(&self, name: &str) -> stream::Config {
        stream::Config {
            name: name.to_owned(),
            description: Some("OPD patient events".into()),
            subjects: vec!["patient.>".into()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
            ..Default::default()
        }
    }
}

/// Creates the stream if it is missing, and otherwise leaves it as it is, reporting how it
/// differs from `settings` (`alert="stream-drift"`): changing a live stream's retention is a
/// decision to take on purpose (with the `nats` CLI), not a side effect of running this again
/// with other defaults.
pub async fn create_or_keep(
    js: &jetstream::Context,
    name: &str,
    settings: &StreamSettings,
) -> anyhow::Result<stream::Stream> {
    let wanted = settings.config(name);
    let stream = js.get_or_create_stream(wanted.clone()).await?;
    report_drift(
        "stream-drift",
        name,
        &drift(&wanted, &stream.cached_info().config),
    );
    Ok(stream)
}

/// Creates the stream with the administrative identity that `nats` names, trying again until
/// `patience` has passed: the cluster may still be electing its leaders.
pub async fn create(
    nats: &NatsSettings,
    settings: &StreamSettings,
    patience: Duration,
) -> anyhow::Result<()> {
    let client = opd_shared::infra::nats::connect(nats, "admin").await?;
    let js = opd_shared::infra::nats::jetstream(client);
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match create_or_keep(&js, &nats.stream, settings).await {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::info!(%error, "stream not created yet; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.context(format!("stream {}", nats.stream))),
        }
    }
}

/// The settings of a live stream that differ from `wanted`, as `name: live …, expected …`.
fn drift(wanted: &stream::Config, live: &stream::Config) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_names_each_setting_that_differs() {
        let wanted = StreamSettings::default().config("PATIENT");
        assert!(drift(&wanted, &wanted).is_empty());
        let live = stream::Config {
            max_age: Duration::from_secs(3600),
            num_replicas: 1,
            ..wanted.clone()
        };
        let drift = drift(&wanted, &live);
        assert_eq!(drift.len(), 2, "{drift:?}");
        assert!(
            drift[0].starts_with("replicas: live 1, expected 3"),
            "{drift:?}"
        );
        assert!(drift[1].starts_with("max_age: live 3600s"), "{drift:?}");
    }

    #[test]
    fn the_stream_settings_layer_like_the_services_and_check_themselves() {
        let environment = HashMap::from([
            ("OPD_STREAM__MAX_AGE".to_owned(), "7days".to_owned()),
            // A service's setting in the same environment is not the stream's concern.
            ("OPD_HTTP__PORT".to_owned(), "9090".to_owned()),
        ]);
        let settings = StreamSettings::layered(None, Some(environment));
        assert_eq!(
            settings.ok(),
            Some(StreamSettings {
                max_age: Duration::from_secs(7 * 24 * 3600),
                ..StreamSettings::default()
            })
        );
        for (variable, value, named) in [
            ("OPD_STREAM__REPLICAS", "0", &["stream.replicas"][..]),
            (
                "OPD_STREAM__DUPLICATE_WINDOW",
                "60days",
                &["stream.duplicate_window", "stream.max_age"],
            ),
        ] {
            let environment = HashMap::from([(variable.to_owned(), value.to_owned())]);
            let error = StreamSettings::layered(None, Some(environment))
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default();
            for name in named {
                assert!(error.contains(name), "{variable}: {error:?} names {name}");
            }
        }
    }
}
