//! Medication records. The book's Go code lost `dose` to a wrong JSON tag; it is kept here.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use opd_shared::domain::{Note, PatientId, Text};
use opd_shared::http::error::ApiError;
use opd_shared::http::idempotency::Effect;
use opd_shared::http::{JsonBody, PathParam};

use opd_shared::http::openapi::{
    BodyErrors, IdempotencyErrors, IdempotencyKey, PathErrors, Unavailable, UnknownPatient,
};
use opd_shared::service::AppState;

use super::patients::ensure_known;

#[derive(Debug, Deserialize, ToSchema)]
pub struct MedicationForm {
    id: PatientId,
    time: Text<100>,
    dose: Text<1000>,
    #[serde(default)]
    notes: Note<2000>,
}

/// Records medication given to a patient and takes them off the pending list.
#[utoipa::path(post, path = "/opd/treatment/medication", tag = "treatment", operation_id = "record_medication",
    security(("bearer" = ["clinician"])),
    request_body(content = MedicationForm, example = json!({
        "id": 200, "time": "2021 07 12 4:35 PM", "dose": "xyz x 1, abc x 2", "notes": "low fever"
    })),
    params(IdempotencyKey),
    responses(
        IdempotencyErrors,
        (status = 201, description = "Recorded; the patient leaves the pending list", body = String, content_type = "application/json",
            example = json!("Record updated successfully")),
        UnknownPatient, BodyErrors, Unavailable,
    ))]
#[tracing::instrument(skip_all, fields(patient_id = %form.id.masked()))]
pub async fn record(
    State(state): State<AppState>,
    effect: Effect,
    JsonBody(form): JsonBody<MedicationForm>,
) -> Result<(StatusCode, Json<&'static str>), ApiError> {
    let mut tx = state.pool.begin().await?;
    ensure_known(&mut tx, form.id).await?;
    sqlx::query!(
        "insert into medications (patient_id, time, dose, notes) values ($1, $2, $3, $4)",
        form.id.get(),
        form.time.as_str(),
        form.dose.as_str(),
        form.notes.as_deref(),
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "update treatment_queue set treated_at = now()
         where id = (
             select id from treatment_queue
             where patient_id = $1 and treated_at is null
             order by id
             limit 1
             for update
         )",
        form.id.get(),
    )
    .execute(&mut *tx)
    .await?;
    effect.committed_in(&mut tx).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json("Record updated successfully")))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MedicationView {
    id: i64,
    time: String,
    dose: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

/// A patient's medication records, oldest first.
#[utoipa::path(get, path = "/opd/treatment/history/{id}", tag = "treatment", operation_id = "medication_history",
    security(("bearer" = ["clinician"])),
    params(("id" = PatientId, Path, description = "The patient's id")),
    responses(
        (status = 200, description = "The patient's medication, oldest first", body = Vec<MedicationView>),
        UnknownPatient, PathErrors, Unavailable,
    ))]
#[tracing::instrument(skip(state))]
pub async fn history(
    State(state): State<AppState>,
    PathParam(id): PathParam<PatientId>,
) -> Result<Json<Vec<MedicationView>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    ensure_known(&mut conn, id).await?;
    let records = sqlx::query_as!(
        MedicationView,
        "select patient_id as id, time, dose, notes from medications
         where patient_id = $1
         -- Qualified: a bare `id` would name the output column, the patient's id.
         order by medications.id",
        id.get(),
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(Json(records))
}
