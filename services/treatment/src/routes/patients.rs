//! The queue of patients sent for treatment, and who this service knows.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;

use opd_shared::domain::PatientId;
use opd_shared::http::error::ApiError;

use opd_shared::http::openapi::{QueryErrors, Unavailable};
use opd_shared::http::page::{PageParams, PageRequest};
use opd_shared::service::AppState;

use super::WAITING;

/// The book's pending treatment entry: inspection's instructions.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingTreatment {
    id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    medication: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tests: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
    /// The list's sort key; the cursor of the next page.
    #[serde(skip)]
    #[schema(ignore)]
    position: i64,
}

/// Patients waiting for treatment, in the order inspection sent them.
#[utoipa::path(get, path = "/opd/treatment/pending", tag = "treatment", operation_id = "pending_treatment",
    security(("bearer" = ["clinician"])),
    params(PageParams),
    responses(
        (status = 200, description = "Patients inspection sent for treatment and not yet given \
            medication, with inspection's instructions", body = Vec<PendingTreatment>,
            headers(("link" = String, description = "`<…?limit=N&after=CURSOR>; rel=\"next\"` when more entries follow")),
            example = json!([{ "id": 200, "medication": "XYZ x 3",
                "tests": "FBT, UC", "notes": "possible Covid-19" }])),
        QueryErrors, Unavailable,
    ))]
#[tracing::instrument(skip(state))]
pub async fn pending(
    State(state): State<AppState>,
    page: PageRequest,
) -> Result<(HeaderMap, Json<Vec<PendingTreatment>>), ApiError> {
    let pending = sqlx::query_as!(
        PendingTreatment,
        "select patient_id as id, medication, tests, notes, id as position
         from treatment_queue
         where treated_at is null and id > $1 and ($3::bigint is null or patient_id = $3)
         -- `position`, not `id`: in order by, `id` would name the output column (the patient).
         order by position
         limit $2",
        page.after.unwrap_or(0),
        page.fetch(),
        page.patient_id(),
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(page.answer(pending, |entry| entry.position))
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
