//! The queue of patients sent for treatment, and who this service knows.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use sqlx::PgConnection;

use opd_shared::domain::PatientId;
use opd_shared::error::ApiError;

use opd_shared::service::AppState;

use super::WAITING;

/// The book's pending treatment entry: inspection's instructions.
#[derive(Debug, Serialize)]
pub struct PendingTreatment {
    id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    medication: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tests: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

/// Patients waiting for treatment, in the order inspection sent them.
#[tracing::instrument(skip(state))]
pub async fn pending(
    State(state): State<AppState>,
) -> Result<Json<Vec<PendingTreatment>>, ApiError> {
    let pending = sqlx::query_as!(
        PendingTreatment,
        "select patient_id as id, medication, tests, notes
         from treatment_queue
         where treated_at is null
         order by id",
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(pending))
}

/// Every request names a patient; this service only knows those inspection sent to it. Any
/// other id is a 404, rather than a record of a patient nobody sent for treatment.
pub async fn ensure_known(conn: &mut PgConnection, id: PatientId) -> Result<(), ApiError> {
    let known = sqlx::query_scalar!(
        r#"select exists (select 1 from treatment_queue where patient_id = $1) as "known!""#,
        id.get()
    )
    .fetch_one(conn)
    .await?;
    WAITING.require_known(id, known)
}
