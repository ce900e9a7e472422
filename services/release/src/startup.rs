use opd_shared::config::Settings;
use opd_shared::service::{Application, Infra};

use crate::SERVICE;
use crate::events::ReleaseHandler;
use crate::routes::{self, AppState};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/release");

/// The durable consumer of `patient.release`, shared by every replica of this service.
pub const RELEASE_CONSUMER: &str = "release-patient-release";

pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let infra = Infra::connect(settings, SERVICE, &MIGRATIONS).await?;
    let api = routes::router(AppState {
        pool: infra.pool.clone(),
    });
    Ok(Application::build(infra, api)
        .await?
        .with_consumer(RELEASE_CONSUMER, ReleaseHandler))
}
