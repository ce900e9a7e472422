//! NATS connection and the JetStream stream every service shares.

use std::time::Duration;

use async_nats::jetstream::consumer;
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

/// What a relay or a consumer needs of the stream's settings, which the stream's owner chooses
/// (`opd-nats stream`) and a service cannot see until it opens the stream.
#[derive(Debug, Clone, Copy)]
pub enum StreamNeed {
    /// The relay publishes again what it published this recently (`outbox.republish_window`):
    /// the stream's duplicate window must be longer, to recognise it by its `Nats-Msg-Id`.
    RepublishWindow(Duration),
    /// Handled event ids are kept this long (`consumer.inbox_retention`): the stream must not
    /// keep events longer, or a consumer created again applies the older ones a second time.
    InboxRetention(Duration),
    /// Nothing of its settings: a consumer whose effects carry the stream sequence they come
    /// from recognises an event it applied by that alone (the board's projection).
    Nothing,
}

impl StreamNeed {
    /// Why `live` does not meet this need, naming both settings; `None` when it does.
    pub(crate) fn unmet(self, live: &stream::Config) -> Option<String> {
        match self {
            Self::RepublishWindow(window) if window >= live.duplicate_window => Some(format!(
                "outbox.republish_window ({window:?}) must be shorter than the stream's \
                 duplicate_window ({:?}): JetStream must still recognise an event the relay \
                 publishes again",
                live.duplicate_window
            )),
            Self::InboxRetention(kept) if kept < live.max_age => Some(format!(
                "consumer.inbox_retention ({kept:?}) must be at least the stream's max_age \
                 ({:?}): a consumer created again reads the stream from its start, and must \
                 recognise every event it holds as handled",
                live.max_age
            )),
            _ => None,
        }
    }
}

/// The stream as it is, for a service: services may read the stream's information but never
/// create, update or delete it (their NATS identities are not allowed to). Its owner creates it
/// (`opd-nats stream`); until then this is an error, and the relay and the consumers try again
/// with their backoff.
///
/// A live stream that does not meet `need` is reported as an error log line carrying
/// `alert="stream-settings"`, naming both settings, and the service goes on: what it risks
/// (an event stored twice, or applied twice by a consumer created again) is less than what
/// stopping costs, and the operator reconciles the two on purpose.
pub(crate) async fn open_stream(
    js: &jetstream::Context,
    name: &str,
    need: StreamNeed,
) -> anyhow::Result<stream::Stream> {
    let stream = js.get_stream(name).await.map_err(|error| {
        anyhow::anyhow!(
            "stream {name} is not available ({error}); it is created by its owner with `opd-nats stream`"
        )
    })?;
    if let Some(why) = need.unmet(&stream.cached_info().config) {
        tracing::error!(alert = "stream-settings", name, "{why}");
    }
    Ok(stream)
}

/// What a consuming service relies on in its live durable consumer and finds otherwise: that
/// it reads `subjects` and nothing else, and that each message is acknowledged explicitly.
pub fn consumer_drift(subjects: &[&str], live: &consumer::Config) -> Vec<String> {
    let mut reads: Vec<&str> = live.filter_subjects.iter().map(String::as_str).collect();
    if !live.filter_subject.is_empty() {
        reads.push(&live.filter_subject);
    }
    differences(&[
        ("filter_subjects", dbg(&reads), dbg(&subjects)),
        (
            "ack_policy",
            dbg(&live.ack_policy),
            dbg(&consumer::AckPolicy::Explicit),
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
            "live settings differ from the configured ones; using them as they are"
        );
    }
}

/// A setting's value as the drift lines print it.
pub fn dbg(value: &impl std::fmt::Debug) -> String {
    format!("{value:?}")
}

/// Each `(name, live, wanted)` whose two values differ, as `name: live …, expected …`.
pub fn differences(settings: &[(&str, String, String)]) -> Vec<String> {
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
    fn a_need_the_live_stream_does_not_meet_names_both_settings() {
        let live = stream::Config {
            duplicate_window: Duration::from_secs(600),
            max_age: Duration::from_secs(30 * 24 * 3600),
            ..Default::default()
        };
        let met = [
            StreamNeed::RepublishWindow(Duration::from_secs(30)),
            StreamNeed::InboxRetention(Duration::from_secs(30 * 24 * 3600)),
        ];
        for need in met {
            assert_eq!(need.unmet(&live), None, "{need:?}");
        }
        let window = StreamNeed::RepublishWindow(Duration::from_secs(600))
            .unmet(&live)
            .unwrap_or_default();
        assert!(
            window.contains("outbox.republish_window (600s)"),
            "{window}"
        );
        assert!(window.contains("duplicate_window (600s)"), "{window}");
        let inbox = StreamNeed::InboxRetention(Duration::from_secs(3600))
            .unmet(&live)
            .unwrap_or_default();
        assert!(
            inbox.contains("consumer.inbox_retention (3600s)"),
            "{inbox}"
        );
        assert!(inbox.contains("max_age (2592000s)"), "{inbox}");
    }
}
