use opd_shared::service::{Service, Subscription};
use sqlx::migrate::Migrator;

use crate::events::RegistrationHandler;
use crate::routes;

static MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/inspection");

/// The durable consumer of `patient.register`, shared by every replica of this service.
pub const REGISTRATIONS_CONSUMER: &str = "inspection-patient-register";

pub static SERVICE: Service = Service {
    name: "inspection",
    port: 9091,
    title: "Inspection Service",
    version: env!("CARGO_PKG_VERSION"),
    migrations: &MIGRATIONS,
    home: "/opd/inspection/",
    routes: routes::router,
    locate: crate::whereabouts::locate,
    consumers: &[Subscription::new::<RegistrationHandler>(
        REGISTRATIONS_CONSUMER,
    )],
};
