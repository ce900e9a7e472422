//! What only the owner of the NATS cluster does: generate the development credentials
//! ([`credentials`]), create the `PATIENT` stream ([`create_stream`]), which the services'
//! identities are not allowed to create, change or delete, and watch or publish on it as an
//! operator ([`events`]).

pub mod credentials;
pub mod events;

use std::time::Duration;

use opd_shared::infra::config::NatsSettings;

pub use credentials::{Credentials, IDENTITIES};

/// Creates the stream with the administrative identity that `settings` names, trying again
/// until `patience` has passed: the cluster may still be electing its leaders. A stream that
/// exists already is left as it is.
pub async fn create_stream(settings: &NatsSettings, patience: Duration) -> anyhow::Result<()> {
    let client = opd_shared::infra::nats::connect(settings, "admin").await?;
    let js = opd_shared::infra::nats::jetstream(client);
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match opd_shared::infra::nats::create_stream(&js, settings).await {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::info!(%error, "stream not created yet; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.context(format!("stream {}", settings.stream))),
        }
    }
}
