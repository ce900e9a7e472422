//! A test's own look at the stream: reading what was published, publishing as a producer (or a
//! broken one) would, and the state of consumers.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{self, ErrorCode, consumer, stream};
use futures::StreamExt;
use opd_shared::events::{Event, EventMeta, headers};
use opd_shared::infra::config::NatsSettings;
use serde_json::Value;
use uuid::Uuid;

use crate::eventually;

/// One message as a test sees it: its headers and its payload as JSON (`Null` if it is not JSON).
pub type Message = (HeaderMap, Value);

/// A JetStream context on a fresh connection, as the administrator, to the cluster that `nats`
/// (a service's test settings, or [`crate::NatsServer::admin_settings`]) points at. Unlike a
/// service's connection it fails at once when no node answers.
pub async fn jetstream(nats: &NatsSettings) -> Result<jetstream::Context, async_nats::Error> {
    connect(&as_admin(nats), "admin").await.map(jetstream::new)
}

/// A fresh connection with the identity and TLS settings of `nats`, named `name` (which is
/// also its inbox prefix, as for a service). Fails at once when no node answers.
pub async fn connect(
    nats: &NatsSettings,
    name: &str,
) -> Result<async_nats::Client, async_nats::Error> {
    opd_shared::infra::nats::install_crypto_provider();
    let addresses = nats
        .servers
        .iter()
        .map(|url| url.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .custom_inbox_prefix(opd_shared::infra::nats::inbox_prefix(name))
        .require_tls(nats.tls.required);
    if let Some(seed) = &nats.nkey_seed_file {
        options = options.nkey(std::fs::read_to_string(seed)?.trim().to_owned());
    }
    if let Some(ca) = &nats.tls.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&nats.tls.cert_file, &nats.tls.key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options.connect(addresses).await?)
}

/// `nats` with the administrator's identity from the same credentials directory: the test
/// looks at and arranges the stream as its owner would, whichever service it tests.
pub fn as_admin(nats: &NatsSettings) -> NatsSettings {
    let mut admin = nats.clone();
    let sibling = |path: &Option<std::path::PathBuf>, name: &str| {
        path.as_ref()
            .and_then(|path| path.parent())
            .map(|dir| dir.join(name))
    };
    admin.nkey_seed_file = sibling(&nats.nkey_seed_file, "admin.nk");
    if nats.tls.cert_file.is_some() {
        admin.tls.cert_file = sibling(&nats.tls.cert_file, "admin.pem");
        admin.tls.key_file = sibling(&nats.tls.key_file, "admin-key.pem");
    }
    admin
}

/// Every message of `subject` on the stream now. A stream that does not exist yet holds none;
/// any other failure (no stream leader while the cluster recovers, say) is an error.
pub async fn read(nats: &NatsSettings, subject: &str) -> Result<Vec<Message>, async_nats::Error> {
    let js = jetstream(nats).await?;
    let stream = match js.get_stream(&nats.stream).await {
        Ok(stream) => stream,
        Err(error)
            if matches!(error.kind(), GetStreamErrorKind::JetStream(inner)
                if inner.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
        {
            return Ok(Vec::new());
        }
        Err(error) => return Err(error.into()),
    };
    let reader = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: subject.to_owned(),
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await?;
    let expected = reader.cached_info().num_pending;
    if expected == 0 {
        return Ok(Vec::new());
    }
    let mut messages = reader
        .fetch()
        .max_messages(usize::try_from(expected).unwrap_or(usize::MAX))
        .expires(Duration::from_secs(1))
        .messages()
        .await?;
    let mut found = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message?;
        let payload = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
        found.push((message.headers.clone().unwrap_or_default(), payload));
    }
    if (found.len() as u64) < expected {
        return Err(format!("read {} of {expected} messages", found.len()).into());
    }
    Ok(found)
}

/// [`read`], retried while it fails.
pub async fn events(nats: &NatsSettings, subject: &str) -> Vec<Message> {
    eventually(&format!("a readable stream with {subject}"), || async {
        match read(nats, subject).await {
            Ok(found) => Some(found),
            Err(error) => {
                eprintln!("cannot read {subject} yet: {error}");
                None
            }
        }
    })
    .await
}

pub use opd_nats_admin::StreamSettings;

/// The stream's settings for the servers `nats` names: one replica on each.
pub fn settings_for(nats: &NatsSettings) -> StreamSettings {
    StreamSettings::for_nodes(nats.servers.len())
}

/// Creates the stream and the durable consumers as their owner does, on the servers `nats`
/// names.
pub async fn create(nats: &NatsSettings) {
    create_with(nats, &settings_for(nats)).await;
}

/// [`create`] with the given settings (a shorter `ack_wait`, say); the stream and durables that
/// exist already are kept as they are.
pub async fn create_with(nats: &NatsSettings, settings: &StreamSettings) {
    opd_nats_admin::stream::create(&as_admin(nats), settings, crate::PATIENCE)
        .await
        .expect("cannot create the stream and its consumers");
}

/// Publishes a raw message on the stream as the administrator, creating the stream first if
/// it is not there yet.
pub async fn publish_raw(nats: &NatsSettings, subject: &str, headers: HeaderMap, payload: Vec<u8>) {
    let js = jetstream(nats).await.expect("cannot connect to NATS");
    // A cluster that has just started, or lost a node, may need a moment to elect leaders.
    eventually(&format!("a publish to {subject}"), || async {
        let attempt = async {
            opd_nats_admin::stream::create_or_keep(&js, &nats.stream, &settings_for(nats)).await?;
            js.publish_with_headers(subject.to_owned(), headers.clone(), payload.clone().into())
                .await?
                .await?;
            Ok::<(), anyhow::Error>(())
        };
        match attempt.await {
            Ok(()) => Some(()),
            Err(error) => {
                eprintln!("publish to {subject} failed, retrying: {error}");
                None
            }
        }
    })
    .await;
}

/// Fresh metadata for an event, as the outbox relay would give it.
pub fn new_meta<E: Event>() -> EventMeta {
    EventMeta {
        id: Uuid::now_v7(),
        event_type: E::TYPE.into(),
        source: E::SOURCE.into(),
        time: chrono::Utc::now(),
        request_id: None,
        caller: None,
        traceparent: None,
    }
}

/// Publishes `event` with the given metadata. The `Nats-Msg-Id` is always fresh, so JetStream
/// stores a repeat and the consumer's own de-duplication is what is tested.
pub async fn publish_meta<E: Event>(nats: &NatsSettings, event: &E, meta: &EventMeta) {
    let mut headers = meta.to_headers();
    headers.insert(headers::MESSAGE_ID, Uuid::new_v4().to_string().as_str());
    let payload = serde_json::to_vec(event).expect("events serialise");
    publish_raw(nats, E::SUBJECT, headers, payload).await;
}

/// Messages of the durable consumer `durable` not yet delivered, and delivered but not yet
/// acknowledged. Both are zero once a consumer has caught up.
pub async fn consumer_backlog(nats: &NatsSettings, durable: &str) -> Option<(u64, usize)> {
    let js = jetstream(nats).await.ok()?;
    let stream = js.get_stream(&nats.stream).await.ok()?;
    let info = stream.consumer_info(durable).await.ok()?;
    Some((info.num_pending, info.num_ack_pending))
}

/// The stream's information once it exists (None until then).
pub async fn stream_info(nats: &NatsSettings) -> Option<stream::Info> {
    let js = jetstream(nats).await.ok()?;
    let mut stream = js.get_stream(&nats.stream).await.ok()?;
    stream.info().await.ok().cloned()
}
