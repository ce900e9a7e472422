use opd_shared::config::Settings;
use opd_shared::service::{self, Application};

use crate::SERVICE;
use crate::events::ReleaseHandler;
use crate::routes::{self, AppState};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/release");

/// The durable consumer of `patient.release`, shared by every replica of this service.
pub const RELEASE_CONSUMER: &str = "release-patient-release";

pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let app = service::build(settings, SERVICE, &MIGRATIONS, |pool| {
        routes::router(AppState { pool })
    })
    .await?;
    Ok(app.with_consumer(RELEASE_CONSUMER, ReleaseHandler))
}
