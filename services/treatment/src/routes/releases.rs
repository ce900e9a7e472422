//! Release requests: treatment is done, the release service takes over.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use opd_shared::domain::{Disposition, Note, PatientId, Text};
use opd_shared::events::PatientReleaseRequested;
use opd_shared::events::outbox;
use opd_shared::http::JsonBody;
use opd_shared::http::error::ApiError;

use opd_shared::events::outbox::EventContext;
use opd_shared::http::openapi::{
    BodyErrors, IdempotencyErrors, IdempotencyKey, Unavailable, UnknownPatient,
};
use opd_shared::http::problem::Problem;
use opd_shared::service::AppState;

use super::patients::ensure_known;

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReleaseForm {
    id: PatientId,
    time: Text<100>,
    next_state: Disposition,
    #[serde(default)]
    post_medication: Note<1000>,
    #[serde(default)]
    notes: Note<2000>,
}

/// Records the request and publishes `patient.release` through the outbox, in one transaction.
#[utoipa::path(post, path = "/opd/treatment/release", tag = "treatment", operation_id = "request_release",
    security(("bearer" = ["clinician"])),
    request_body(content = ReleaseForm, example = json!({
        "id": 200, "time": "2021 07 12 8:35 PM", "next_state": "discharge",
        "post_medication": "NM x 10 days"
    })),
    params(IdempotencyKey),
    responses(
        IdempotencyErrors,
        (status = 201, description = "Recorded; `patient.release` published", body = String, content_type = "application/json",
            example = json!("Release event published")),
        (status = 409, description = "A release was already requested for this treatment \
            (`/problems/conflict`)", body = Problem, content_type = "application/problem+json"),
        UnknownPatient, BodyErrors, Unavailable,
    ))]
#[tracing::instrument(skip_all, fields(patient_id = %form.id.masked()))]
pub async fn request(
    State(state): State<AppState>,
    context: EventContext,
    JsonBody(form): JsonBody<ReleaseForm>,
) -> Result<(StatusCode, Json<&'static str>), ApiError> {
    let mut tx = state.pool.begin().await?;
    ensure_known(&mut tx, form.id).await?;
    // One release per treatment: a repeated request (a client retrying, a second click) must
    // not send the patient to release twice. The patient's queue rows are locked so that two
    // requests at once cannot both pass.
    let visit = sqlx::query!(
        r#"with treatments as (
               select id from treatment_queue where patient_id = $1 for update
           )
           select (select count(*) from treatments) as "treatments!",
                  (select count(*) from release_requests where patient_id = $1) as "requested!""#,
        form.id.get(),
    )
    .fetch_one(&mut *tx)
    .await?;
    if visit.requested >= visit.treatments {
        return Err(ApiError::Conflict(format!(
            "a release was already requested for patient {}'s treatment; a new release needs \
             a new inspection (POST /opd/inspection/record)",
            form.id
        )));
    }
    sqlx::query!(
        "insert into release_requests (patient_id, time, next_state, post_medication, notes)
         values ($1, $2, $3, $4, $5)",
        form.id.get(),
        form.time.as_str(),
        form.next_state.as_str(),
        form.post_medication.as_deref(),
        form.notes.as_deref(),
    )
    .execute(&mut *tx)
    .await?;
    let event = PatientReleaseRequested {
        id: form.id,
        time: form.time,
        next_state: form.next_state,
        post_medication: form.post_medication,
        notes: form.notes,
    };
    outbox::enqueue(&mut tx, &event, &context).await?;
    state.commit(tx).await?;
    tracing::info!("release requested");
    Ok((StatusCode::CREATED, Json("Release event published")))
}
