use opd_shared::config::Settings;
use opd_shared::service::{self, Application};

use crate::SERVICE;
use crate::events::TreatmentHandler;
use crate::routes::{self, AppState};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/treatment");

/// The durable consumer of `patient.treatment`, shared by every replica of this service.
pub const TREATMENT_CONSUMER: &str = "treatment-patient-treatment";

pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let app = service::build(settings, SERVICE, &MIGRATIONS, |pool| {
        routes::router(AppState { pool })
    })
    .await?;
    Ok(app.with_consumer(TREATMENT_CONSUMER, TreatmentHandler))
}
