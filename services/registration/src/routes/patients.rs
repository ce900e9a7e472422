//! Registering, updating and viewing patients.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use opd_shared::domain::PatientId;
use opd_shared::error::ApiError;
use opd_shared::http::{JsonBody, PathParam, RequestId};
use opd_shared::service::AppState;

use super::{issue_token, unknown_patient};
use crate::domain::PatientForm;
use crate::token_counter::IssuedToken;

/// Stores a new patient, hands out today's next token and, in the same transaction, writes the
/// `patient.register` event to the outbox.
#[tracing::instrument(skip_all, fields(patient_id = %form.id))]
pub async fn register(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    JsonBody(form): JsonBody<PatientForm>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let mut tx = state.pool.begin().await?;
    let inserted = sqlx::query!(
        "insert into patients (id, full_name, address, sex, email, phone, remarks)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (id) do nothing",
        form.id.get(),
        form.full_name.as_str(),
        form.address.as_deref(),
        form.sex.map(|sex| sex.as_str()),
        form.email.as_ref().map(|email| email.as_str()),
        form.phone.map(|phone| phone.get()),
        form.remarks.as_deref(),
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(ApiError::Conflict(format!(
            "patient {} is already registered: change the record with PUT /opd/patient/update, \
             or get a token for a new visit with GET /opd/patient/token/{}",
            form.id, form.id
        )));
    }
    let issued = issue_token(&mut tx, form.id, &state.event_context(request_id)).await?;
    tx.commit().await?;
    tracing::info!(token = issued.token, "patient registered");
    Ok((StatusCode::CREATED, Json(issued)))
}

#[tracing::instrument(skip_all, fields(patient_id = %form.id))]
pub async fn update(
    State(state): State<AppState>,
    JsonBody(form): JsonBody<PatientForm>,
) -> Result<Json<&'static str>, ApiError> {
    let updated = sqlx::query!(
        "update patients
         set full_name = $2, address = $3, sex = $4, email = $5, phone = $6, remarks = $7,
             updated_at = now()
         where id = $1",
        form.id.get(),
        form.full_name.as_str(),
        form.address.as_deref(),
        form.sex.map(|sex| sex.as_str()),
        form.email.as_ref().map(|email| email.as_str()),
        form.phone.map(|phone| phone.get()),
        form.remarks.as_deref(),
    )
    .execute(&state.pool)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(unknown_patient(form.id));
    }
    Ok(Json("Record for Patient updated successfully"))
}

/// The book's view of a patient; absent optional fields are left out.
#[derive(Debug, Serialize)]
pub struct PatientView {
    id: i64,
    full_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remarks: Option<String>,
}

#[tracing::instrument(skip(state))]
pub async fn view(
    State(state): State<AppState>,
    PathParam(id): PathParam<PatientId>,
) -> Result<Json<PatientView>, ApiError> {
    sqlx::query_as!(
        PatientView,
        "select id, full_name, address, sex, email, phone, remarks from patients where id = $1",
        id.get(),
    )
    .fetch_optional(&state.pool)
    .await?
    .map(Json)
    .ok_or_else(|| unknown_patient(id))
}
