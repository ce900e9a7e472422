use opd_shared::config::Settings;
use opd_shared::service::{self, Application};

use crate::SERVICE;
use crate::routes::{self, AppState};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/registration");

/// Connects to the database (migrating it) and to NATS, and builds the service. It only
/// produces events, so it runs no consumer.
pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    service::build(settings, SERVICE, &MIGRATIONS, |pool| {
        routes::router(AppState { pool })
    })
    .await
}
