//! NATS connection and the JetStream stream every service shares.

use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull};
use async_nats::jetstream::{self, stream};
use async_nats::{ConnectOptions, Event, ServerAddr};

use crate::infra::config::NatsSettings;
use crate::infra::secret_file;

/// Connects to the cluster as `name`. The client keeps reconnecting for ever, to whichever node
/// answers, and the call returns at once even when no node is up yet: the relay and the
/// consumers wait for the connection on their own, and `/readyz` reports it (without failing on
/// it). Only a setting that can never work (a missing seed or certificate file) is an error.
///
/// Replies come to `_INBOX.<name>.…` instead of the shared `_INBOX.…`: the server lets each
/// identity subscribe to its own prefix only, so no service can read another's replies.
pub async fn connect(settings: &NatsSettings, name: &str) -> anyhow::Result<async_nats::Client> {
    install_crypto_provider();
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
        .custom_inbox_prefix(inbox_prefix(name))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(3))
        .event_callback(|event| async move {
            match event {
                Event::Connected => tracing::info!("connected to NATS"),
                Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
                Event::LameDuckMode => tracing::warn!("NATS server entered lame duck mode"),
                Event::SlowConsumer(sid) => tracing::warn!(sid, "slow NATS consumer"),
                // A refused identity or permission is a configuration fault: say it loudly.
                Event::ServerError(error) => tracing::error!(%error, "NATS server error"),
                Event::ClientError(error) => tracing::warn!(%error, "NATS client error"),
                other => tracing::info!(event = %other, "NATS connection event"),
            }
        });
    if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(path) = &settings.nkey_seed_file {
        options = options.nkey(secret_file::read("nats.nkey_seed_file", path).await?);
    }
    options = options.require_tls(settings.tls.required);
    if let Some(path) = &settings.tls.ca_file {
        secret_file::check_readable("nats.tls.ca_file", path).await?;
        options = options.add_root_certificates(path.clone());
    }
    match (&settings.tls.cert_file, &settings.tls.key_file) {
        (Some(cert), Some(key)) => {
            secret_file::check_readable("nats.tls.cert_file", cert).await?;
            secret_file::check_readable("nats.tls.key_file", key).await?;
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        (None, None) => {}
        _ => anyhow::bail!("nats.tls.cert_file and nats.tls.key_file go together"),
    }
    Ok(options.connect(servers).await?)
}

/// Where replies to `name`'s requests arrive; `nats/auth.conf` grants each identity its own.
pub fn inbox_prefix(name: &str) -> String {
    format!("_INBOX.{name}")
}

/// rustls needs one process-wide crypto provider. The build has only `ring` (through
/// async-nats); installing it explicitly keeps a second provider, should a dependency ever
/// bring one in, from turning the first TLS handshake into a panic.
pub fn install_crypto_provider() {
    // Err means a provider is installed already (by an earlier call): nothing to do.
    let _ = rustls::crypto::ring::default_provider().install_default();
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

/// The stream as it is, for a service: services may read the stream's information but never
/// create, update or delete it (their NATS identities are not allowed to). Whoever owns the
/// stream creates it with [`create_stream`] (`opd-nats stream`); until then this is an error, and
/// the relay and the consumers try again with their backoff.
///
/// A difference between the live stream and this service's settings is reported as an error
/// log line carrying `alert="stream-drift"`, and the service goes on with the live stream: an
/// update from every service would let one started with other settings (a shorter `max_age`
/// deletes unconsumed events at once), or a new release's defaults, revert what the operator
/// tuned.
pub(crate) async fn open_stream(
    js: &jetstream::Context,
    settings: &NatsSettings,
) -> anyhow::Result<stream::Stream> {
    let wanted = stream_config(settings);
    let stream = js.get_stream(&wanted.name).await.map_err(|error| {
        anyhow::anyhow!(
            "stream {} is not available ({error}); it is created by its owner with `opd-nats stream`",
            wanted.name
        )
    })?;
    let drift = stream_drift(&wanted, &stream.cached_info().config);
    report_drift("stream-drift", &wanted.name, &drift);
    Ok(stream)
}

/// Creates the stream if it is missing, and otherwise leaves it as it is (reporting drift as
/// [`open_stream`] does). For the stream's owner, with the administrative identity.
pub async fn create_stream(
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
pub(crate) fn stream_drift(wanted: &stream::Config, live: &stream::Config) -> Vec<String> {
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
pub(crate) fn consumer_drift(wanted: &pull::Config, live: &consumer::Config) -> Vec<String> {
    differences(&[
        (
            "filter_subjects",
            dbg(&live.filter_subjects),
            dbg(&wanted.filter_subjects),
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
pub(crate) fn report_drift(alert: &'static str, name: &str, drift: &[String]) {
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
