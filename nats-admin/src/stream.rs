//! The `PATIENT` stream and its durable consumers, as their owner creates them. Their settings
//! are the owner's alone: the services only use the stream and bind to their own consumer, and
//! check what they need of either when they open it (`opd_shared::infra::nats::StreamNeed`,
//! `consumer_drift`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull};
use async_nats::jetstream::{self, kv, stream};
use opd_shared::events::{BOARD_BUCKET, DURABLES, Durable};
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
    /// Each durable consumer's: a message not acknowledged within this time is delivered
    /// again.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// The most the stream holds on each node, in bytes. At the limit it refuses new events
    /// (they wait in the producers' outboxes, and `StreamNearlyFull` fires first) rather than
    /// dropping old ones; keep it below each node's `max_file_store` (nats/node.conf, 4 GB).
    pub max_bytes: u64,
    /// How long an instance's last heartbeat stays in the presence stream (`OPD_HEARTBEATS`,
    /// one message per instance): an instance that stops beating leaves `opd-nats status`
    /// within this time. Keep it a few times the services' `nats.heartbeat_interval`.
    #[serde(with = "humantime_serde")]
    pub presence_ttl: Duration,
    /// Copies of a site's own stream of registrations (`opd-nats site-stream`): one, as a
    /// clinic runs one NATS server (`nats/site.conf`).
    pub site_replicas: usize,
}

/// The presence stream: each instance's last heartbeat, for `presence_ttl`.
pub const HEARTBEATS: &str = "OPD_HEARTBEATS";

/// How long a board key outlives its last write: two days, so that a visit from before
/// midnight is still there to be moved on the next morning.
const BOARD_MAX_AGE: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// The presence stream's limit (it lives in memory).
const HEARTBEATS_MAX_BYTES: i64 = 8 * 1024 * 1024;

/// The smallest `stream.max_bytes` taken: a few thousand events.
const MIN_MAX_BYTES: u64 = 1024 * 1024;

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            replicas: 3,
            duplicate_window: Duration::from_secs(10 * 60),
            max_age: Duration::from_secs(30 * 24 * 60 * 60),
            ack_wait: Duration::from_secs(30),
            max_bytes: 3 * 1024 * 1024 * 1024,
            presence_ttl: Duration::from_secs(15),
            site_replicas: 1,
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
        if settings.max_bytes < MIN_MAX_BYTES {
            return Err(config::ConfigError::Message(format!(
                "stream.max_bytes ({}) must be at least {MIN_MAX_BYTES}",
                settings.max_bytes
            )));
        }
        if settings.replicas == 0 || settings.site_replicas == 0 {
            return Err(config::ConfigError::Message(
                "stream.replicas and stream.site_replicas must be at least 1".into(),
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

    /// The presence stream: the last heartbeat of each instance (one subject each), in memory,
    /// for `presence_ttl`. What it loses in a restart comes back with the next beats.
    pub fn heartbeats_config(&self) -> stream::Config {
        stream::Config {
            name: HEARTBEATS.to_owned(),
            description: Some("OPD heartbeats: each instance's last one".into()),
            subjects: vec![format!(
                "{}.>",
                opd_shared::micro::heartbeat::SUBJECT_PREFIX
            )],
            storage: stream::StorageType::Memory,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: self.replicas,
            max_age: self.presence_ttl,
            // The server caps it at max_age anyway; said here so that it is no drift.
            duplicate_window: self.presence_ttl,
            max_messages_per_subject: 1,
            // A bound on memory whatever publishes: a few thousand instances' beats.
            max_bytes: HEARTBEATS_MAX_BYTES,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        }
    }

    /// The configuration of durable consumer `durable`: its subjects, each message
    /// acknowledged on its own, from the stream's first event, and delivered for as long as it
    /// takes (what can never succeed is parked by the service, not dropped by the server).
    pub fn consumer_config(&self, durable: &Durable) -> pull::Config {
        pull::Config {
            durable_name: Some(durable.name.to_owned()),
            description: Some(format!(
                "OPD: {} for its service",
                durable.subjects.join(", ")
            )),
            filter_subject: match durable.subjects {
                [one] => (*one).to_owned(),
                _ => String::new(),
            },
            filter_subjects: match durable.subjects {
                [_] => Vec::new(),
                many => many.iter().map(|subject| (*subject).to_owned()).collect(),
            },
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            deliver_policy: consumer::DeliverPolicy::All,
            max_deliver: -1,
            ..Default::default()
        }
    }

    /// The board's bucket ([`BOARD_BUCKET`]): the last value of each key only, on disk,
    /// replicated like the stream. Keys not written for [`BOARD_MAX_AGE`] leave it: the board
    /// shows today's visits, and a visit is written each time it moves.
    pub fn board_config(&self) -> kv::Config {
        kv::Config {
            bucket: BOARD_BUCKET.to_owned(),
            description: "OPD waiting-room board: each visit's stage, each stage's called token"
                .into(),
            history: 1,
            max_age: BOARD_MAX_AGE,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    /// The stream's configuration: every `patient.*` subject, replicated, on disk, bounded in
    /// age and in size. A full stream refuses new events (`DiscardPolicy::New`): they stay in
    /// the producers' outboxes until there is room, where dropping the oldest would lose
    /// events a consumer that is behind has not read yet.
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
            max_bytes: i64::try_from(self.max_bytes).unwrap_or(i64::MAX),
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        }
    }
}

/// Creates every durable consumer of the platform that is missing, and leaves the others as
/// they are, reporting how they differ (`alert="consumer-drift"`).
pub async fn create_or_keep_consumers(
    stream: &stream::Stream,
    settings: &StreamSettings,
) -> anyhow::Result<()> {
    for durable in &DURABLES {
        let wanted = settings.consumer_config(durable);
        let consumer = stream
            .get_or_create_consumer(durable.name, wanted.clone())
            .await?;
        report_drift(
            "consumer-drift",
            durable.name,
            &consumer_drift(&wanted, &consumer.cached_info().config),
        );
    }
    Ok(())
}

/// The settings of a live durable consumer that differ from `wanted`.
fn consumer_drift(wanted: &pull::Config, live: &consumer::Config) -> Vec<String> {
    differences(&[
        (
            "filter_subject",
            dbg(&(&live.filter_subject, &live.filter_subjects)),
            dbg(&(&wanted.filter_subject, &wanted.filter_subjects)),
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
    let presence = settings.heartbeats_config();
    let heartbeats = js.get_or_create_stream(presence.clone()).await?;
    report_drift(
        "stream-drift",
        HEARTBEATS,
        &drift(&presence, &heartbeats.cached_info().config),
    );
    create_or_keep_board(js, settings).await?;
    Ok(stream)
}

/// Creates the board's bucket if it is missing, and reports how a live one differs.
async fn create_or_keep_board(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> anyhow::Result<()> {
    let wanted = settings.board_config();
    let stream_name = format!("KV_{BOARD_BUCKET}");
    if js.get_key_value(BOARD_BUCKET).await.is_err() {
        js.create_key_value(wanted.clone()).await?;
    }
    let live = js
        .get_stream(&stream_name)
        .await?
        .cached_info()
        .config
        .clone();
    let drift = differences(&[
        (
            "replicas",
            dbg(&live.num_replicas),
            dbg(&wanted.num_replicas),
        ),
        ("max_age", dbg(&live.max_age), dbg(&wanted.max_age)),
        (
            "history",
            dbg(&live.max_messages_per_subject),
            dbg(&wanted.history),
        ),
        ("storage", dbg(&live.storage), dbg(&wanted.storage)),
    ]);
    report_drift("stream-drift", &stream_name, &drift);
    Ok(())
}

/// Creates the stream and its durable consumers with the administrative identity that `nats`
/// names, trying again until `patience` has passed: the cluster may still be electing its
/// leaders.
pub async fn create(
    nats: &NatsSettings,
    settings: &StreamSettings,
    patience: Duration,
) -> anyhow::Result<()> {
    let client = opd_shared::infra::nats::connect(nats, "admin").await?;
    let js = opd_shared::infra::nats::jetstream(client);
    retry(patience, || async {
        let stream = create_or_keep(&js, &nats.stream, settings).await?;
        create_or_keep_consumers(&stream, settings).await
    })
    .await
    .map_err(|error| error.context(format!("stream {}", nats.stream)))
}

/// Runs `attempt` until it succeeds or `patience` has passed: a server that has just started
/// may still be electing its leaders.
pub(crate) async fn retry<T, F, Fut>(patience: Duration, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::info!(%error, "not done yet; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error),
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
        ("max_bytes", dbg(&live.max_bytes), dbg(&wanted.max_bytes)),
        ("discard", dbg(&live.discard), dbg(&wanted.discard)),
        ("storage", dbg(&live.storage), dbg(&wanted.storage)),
        ("retention", dbg(&live.retention), dbg(&wanted.retention)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_of_one_subject_filters_on_it_and_the_boards_on_its_five() {
        let settings = StreamSettings::default();
        let board = settings.consumer_config(&opd_shared::events::BOARD_DURABLE);
        assert!(board.filter_subject.is_empty());
        assert_eq!(
            board.filter_subjects.len(),
            opd_shared::events::BOARD_DURABLE.subjects.len()
        );
        for durable in DURABLES
            .iter()
            .filter(|durable| durable.subjects.len() == 1)
        {
            let config = settings.consumer_config(durable);
            assert_eq!(config.filter_subject, durable.subjects[0]);
            assert!(config.filter_subjects.is_empty());
        }
    }

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
            ("OPD_STREAM__MAX_BYTES", "1000", &["stream.max_bytes"]),
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
