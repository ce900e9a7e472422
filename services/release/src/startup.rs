use opd_shared::events::RELEASE_DURABLE;
use opd_shared::service::{Service, Subscription};
use sqlx::migrate::Migrator;

use crate::events::ReleaseHandler;
use crate::routes;

static MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/release");

/// The durable consumer of `patient.release`, shared by every replica of this service.
pub const RELEASE_CONSUMER: &str = RELEASE_DURABLE.name;

pub static SERVICE: Service = Service {
    name: "release",
    port: 9093,
    title: "Release Service",
    version: env!("CARGO_PKG_VERSION"),
    migrations: &MIGRATIONS,
    home: "/opd/release/",
    routes: routes::router,
    locate: Some(crate::whereabouts::locate),
    extras: None,
    consumers: &[Subscription::new::<ReleaseHandler>(&RELEASE_DURABLE)],
};
