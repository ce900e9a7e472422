use opd_shared::infra::Infra;
use opd_shared::service::{Extras, Service};
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::registrar::Registrar;
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
    extras: Some(extras),
    consumers: &[],
};

/// One commit runs at a time; the second connection stands by should the first break.
const REGISTRAR_CONNECTIONS: u32 = 2;

/// The instance's registrar, which its registration route reaches. It needs no task of its
/// own: a request that finds no commit under way starts one.
///
/// It commits on connections of its own, whose statements keep one generic plan: left to
/// choose, PostgreSQL plans its statement afresh at every run (its plan for arrays of unknown
/// length looks dearer than one for the arrays at hand), and planning took longer than running
/// it (docs/benchmarks.md). The statement reads no table by a scan, so the plan does not go
/// stale as the tables grow.
fn extras(infra: &Infra, _: CancellationToken) -> anyhow::Result<Extras> {
    let pool = opd_shared::infra::db::dedicated_pool(
        &infra.pool,
        &infra.settings.database,
        REGISTRAR_CONNECTIONS,
        &[("plan_cache_mode", "force_generic_plan")],
    );
    let registrar = Registrar::new(
        pool,
        infra.settings.site.clone(),
        infra.outbox_written.clone(),
    );
    Ok(Extras {
        layer: Box::new(move |router| router.layer(axum::Extension(registrar))),
        tasks: Vec::new(),
    })
}
