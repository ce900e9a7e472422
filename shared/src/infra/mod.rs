//! What a service runs on: configuration, the database and NATS connections, telemetry and
//! metrics, and the small helpers they share (retries, secret files, shutdown on a signal).

pub mod config;
pub mod db;
pub mod metrics;
pub mod nats;
pub mod retry;
pub mod secret_file;
pub mod shutdown;
pub mod telemetry;

use std::sync::Arc;

use async_nats::jetstream;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::sync::Notify;

use crate::auth::access::Authenticator;
use crate::control::state::Control;
use crate::http::health::Consumers;
use config::Settings;
use metrics::Metrics;

/// Connections a service holds for its whole life.
#[derive(Clone)]
pub struct Infra {
    pub settings: Settings,
    pub pool: PgPool,
    /// The outbox relay's own connections ([`db::Pools::relay`]).
    pub relay_pool: PgPool,
    pub nats: async_nats::Client,
    pub jetstream: jetstream::Context,
    /// Requests that wrote events wake the relay through it.
    pub outbox_written: Arc<Notify>,
    /// The consumers report their state here, `/readyz` reads it.
    pub consumers: Consumers,
    /// This instance's metrics, served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// How its HTTP API tells who is calling (`auth.*`).
    pub authenticator: Arc<Authenticator>,
    /// What the control plane has set (maintenance).
    pub control: Control,
}

impl Infra {
    /// Connects to the database (applying `migrations`) and to NATS as the identity `name`.
    pub async fn connect(
        settings: Settings,
        name: &str,
        migrations: &'static Migrator,
    ) -> anyhow::Result<Self> {
        let authenticator = Arc::new(authenticator(&settings)?);
        let pools = db::connect_and_migrate(&settings.database, migrations).await?;
        let client = nats::connect(&settings.nats, name).await?;
        Ok(Self {
            settings,
            pool: pools.main,
            relay_pool: pools.relay,
            jetstream: nats::jetstream(client.clone()),
            nats: client,
            outbox_written: Arc::new(Notify::new()),
            consumers: Consumers::default(),
            metrics: Arc::new(Metrics::new()),
            authenticator,
            control: Control::default(),
        })
    }
}

/// The issuer's keys as `auth.*` names them, or, with authentication off, a loud warning.
pub fn authenticator(settings: &Settings) -> anyhow::Result<Authenticator> {
    if settings.auth.enabled {
        Ok(Authenticator::Tokens(Box::new(
            crate::auth::keys::Keys::load(&settings.auth)?,
        )))
    } else {
        tracing::warn!(
            "AUTHENTICATION IS OFF (auth.enabled = false): anyone who reaches this service may \
             call every route, the operator's included; for the book's curl commands only"
        );
        Ok(Authenticator::Off)
    }
}
