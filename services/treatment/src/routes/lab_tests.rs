//! Test records (laboratory tests taken during treatment).

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
pub struct TestForm {
    id: PatientId,
    time: Text<100>,
    test_name: Text<100>,
    #[serde(default)]
    results: Note<2000>,
    #[serde(default)]
    status: Note<50>,
    #[serde(default)]
    notes: Note<2000>,
}

/// Records a lab test and its result; the patient stays on the pending list.
#[utoipa::path(post, path = "/opd/treatment/tests", tag = "treatment", operation_id = "record_test",
    security(("bearer" = ["clinician"])),
    request_body(content = TestForm, example = json!({
        "id": 200, "time": "2021 07 12 4:35 PM", "test_name": "FBC",
        "status": "sample collected", "notes": "possible covid-19"
    })),
    params(IdempotencyKey),
    responses(
        IdempotencyErrors,
        (status = 201, description = "Recorded", body = String, content_type = "application/json", example = json!("Test recorded successfully")),
        UnknownPatient, BodyErrors, Unavailable,
    ))]
#[tracing::instrument(skip_all, fields(patient_id = %form.id.masked()))]
pub async fn record(
    State(state): State<AppState>,
    effect: Effect,
    JsonBody(form): JsonBody<TestForm>,
) -> Result<(StatusCode, Json<&'static str>), ApiError> {
    let mut tx = state.pool.begin().await?;
    ensure_known(&mut tx, form.id).await?;
    sqlx::query!(
        "insert into test_records (patient_id, time, test_name, results, status, notes)
         values ($1, $2, $3, $4, $5, $6)",
        form.id.get(),
        form.time.as_str(),
        form.test_name.as_str(),
        form.results.as_deref(),
        form.status.as_deref(),
        form.notes.as_deref(),
    )
    .execute(&mut *tx)
    .await?;
    effect.committed_in(&mut tx).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json("Test recorded successfully")))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestView {
    id: i64,
    time: String,
    test_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

/// A patient's test records, oldest first.
#[utoipa::path(get, path = "/opd/treatment/tests/{id}", tag = "treatment", operation_id = "test_history",
    security(("bearer" = ["clinician"])),
    params(("id" = PatientId, Path, description = "The patient's id")),
    responses(
        (status = 200, description = "The patient's tests, oldest first", body = Vec<TestView>),
        UnknownPatient, PathErrors, Unavailable,
    ))]
#[tracing::instrument(skip(state))]
pub async fn history(
    State(state): State<AppState>,
    PathParam(id): PathParam<PatientId>,
) -> Result<Json<Vec<TestView>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    ensure_known(&mut conn, id).await?;
    let records = sqlx::query_as!(
        TestView,
        "select patient_id as id, time, test_name, results, status, notes from test_records
         where patient_id = $1
         -- Qualified: a bare `id` would name the output column, the patient's id.
         order by test_records.id",
        id.get(),
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(Json(records))
}
