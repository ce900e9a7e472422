use opd_shared::events::TREATMENT_DURABLE;
use opd_shared::service::{Service, Subscription};
use sqlx::migrate::Migrator;

use crate::events::TreatmentHandler;
use crate::routes;

static MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/treatment");

/// The durable consumer of `patient.treatment`, shared by every replica of this service.
pub const TREATMENT_CONSUMER: &str = TREATMENT_DURABLE.name;

pub static SERVICE: Service = Service {
    name: "treatment",
    port: 9092,
    title: "Treatment Service",
    version: env!("CARGO_PKG_VERSION"),
    migrations: &MIGRATIONS,
    home: "/opd/treatment/",
    routes: routes::router,
    locate: Some(crate::whereabouts::locate),
    extras: None,
    consumers: &[Subscription::new::<TreatmentHandler>(&TREATMENT_DURABLE)],
};
