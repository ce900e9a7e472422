use opd_shared::service::Service;
use sqlx::migrate::Migrator;

use crate::routes;

static MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/registration");

/// The registration service. It only produces events, so it runs no consumer.
pub static SERVICE: Service = Service {
    name: "registration",
    port: 9090,
    title: "Registration Service",
    version: env!("CARGO_PKG_VERSION"),
    migrations: &MIGRATIONS,
    home: "/opd/patient/",
    routes: routes::router,
    locate: Some(crate::whereabouts::locate),
    extras: None,
    consumers: &[],
};
