use opd_shared::config::Settings;
use opd_shared::service::{self, Application};

use crate::SERVICE;
use crate::events::RegistrationHandler;
use crate::routes::{self, AppState};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/inspection");

/// The durable consumer of `patient.register`, shared by every replica of this service.
pub const REGISTRATIONS_CONSUMER: &str = "inspection-patient-register";

pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let app = service::build(settings, SERVICE, &MIGRATIONS, |pool| {
        routes::router(AppState { pool })
    })
    .await?;
    Ok(app.with_consumer(REGISTRATIONS_CONSUMER, RegistrationHandler))
}
