use opd_shared::events::INSPECTION_DURABLE;
use opd_shared::service::{Service, Subscription};
use sqlx::migrate::Migrator;

use crate::events::RegistrationHandler;
use crate::routes;

static MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/inspection");

/// The durable consumer of `patient.register`, shared by every replica of this service.
pub const REGISTRATIONS_CONSUMER: &str = INSPECTION_DURABLE.name;

pub static SERVICE: Service = Service {
    name: "inspection",
    port: 9091,
    title: "Inspection Service",
    version: env!("CARGO_PKG_VERSION"),
    migrations: &MIGRATIONS,
    home: "/opd/inspection/",
    routes: routes::router,
    locate: Some(crate::whereabouts::locate),
    extras: None,
    consumers: &[Subscription::new::<RegistrationHandler>(
        &INSPECTION_DURABLE,
    )],
};
