//! Registering, updating and viewing patients.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use opd_shared::domain::PatientId;
use opd_shared::events::PatientRegistered;
use opd_shared::events::outbox::{Envelope, EventContext};
use opd_shared::http::error::ApiError;
use opd_shared::http::openapi::{
    BodyErrors, IdempotencyErrors, IdempotencyKey, PathErrors, Unavailable,
};
use opd_shared::http::problem::Problem;
use opd_shared::http::{JsonBody, PathParam};
use opd_shared::service::AppState;

use super::unknown_patient;
use crate::domain::PatientForm;
use crate::registrar::Registrar;
use crate::token_counter::IssuedToken;

/// Registers a patient and hands out today's next queue token.
///
/// Stores the patient, takes the day's next token and writes the `patient.register` event to
/// the outbox, all in one statement (shared with the registrations that arrive meanwhile);
/// the inspection service then adds the patient to its pending list.
#[utoipa::path(post, path = "/opd/patient/register", tag = "registration", operation_id = "register_patient",
    security(("bearer" = ["registrar"])),
    request_body = PatientForm,
    params(IdempotencyKey),
    responses(
        IdempotencyErrors,
        (status = 201, description = "Registered; `patient.register` published", body = IssuedToken,
            example = json!({ "id": 200, "token": 1, "site": "hospital" })),
        (status = 409, description = "A patient with this id is registered already \
            (`/problems/conflict`)", body = Problem, content_type = "application/problem+json"),
        BodyErrors, Unavailable,
    ))]
#[tracing::instrument(skip_all, fields(patient_id = %form.id.masked()))]
pub async fn register(
    Extension(registrar): Extension<Registrar>,
    context: EventContext,
    JsonBody(form): JsonBody<PatientForm>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let event = Envelope::new::<PatientRegistered>(&context);
    let id = form.id;
    let Some(issued) = registrar.register(form, event).await? else {
        return Err(ApiError::Conflict(format!(
            "patient {id} is already registered: change the record with PUT /opd/patient/update, \
             or get a token for a new visit with GET /opd/patient/token/{id}"
        )));
    };
    tracing::info!(token = issued.token, "patient registered");
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Replaces a registered patient's record.
#[utoipa::path(put, path = "/opd/patient/update", tag = "registration", operation_id = "update_patient",
    security(("bearer" = ["registrar"])),
    request_body = PatientForm,
    responses(
        (status = 200, description = "Updated", body = String, content_type = "application/json",
            example = json!("Record for Patient updated successfully")),
        (status = 404, description = "No patient with this id is registered \
            (`/problems/not-found`)", body = Problem, content_type = "application/problem+json"),
        BodyErrors, Unavailable,
    ))]
#[tracing::instrument(skip_all, fields(patient_id = %form.id.masked()))]
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
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 200, "full_name": "chanaka fernando", "address": "44, sw19, london", "sex": "male",
    "phone": 222_222_222
}))]
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

/// A registered patient's record.
#[utoipa::path(get, path = "/opd/patient/view/{id}", tag = "registration", operation_id = "view_patient",
    security(("bearer" = ["registrar"]), ("bearer" = ["clinician"])),
    params(("id" = PatientId, Path, description = "The patient's id")),
    responses(
        (status = 200, description = "The record; absent fields are left out", body = PatientView),
        (status = 404, description = "No patient with this id is registered \
            (`/problems/not-found`)", body = Problem, content_type = "application/problem+json"),
        PathErrors, Unavailable,
    ))]
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
