//! Pending releases and discharges. The book's Go code lost `state` to a wrong JSON tag, so it
//! could never send a patient for admission; here it is kept and acted on.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use opd_shared::domain::{Disposition, Note, PatientId, Text};
use opd_shared::events::outbox;
use opd_shared::events::outbox::EventContext;
use opd_shared::events::{PatientAdmissionRequested, PatientDischarged};
use opd_shared::http::JsonBody;
use opd_shared::http::error::ApiError;
use opd_shared::http::openapi::{
    BodyErrors, IdempotencyErrors, IdempotencyKey, NotWaiting, QueryErrors, Unavailable,
    UnknownPatient,
};
use opd_shared::http::page::{PageParams, PageRequest};
use opd_shared::service::AppState;

use super::WAITING;

/// The book's pending release entry: treatment's release request.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingRelease {
    id: i64,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    post_medication: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
    /// The list's sort key; the cursor of the next page.
    #[serde(skip)]
    #[schema(ignore)]
    position: i64,
}

/// Patients waiting to be released, in the order treatment asked.
#[utoipa::path(get, path = "/opd/release/pending", tag = "release", operation_id = "pending_release",
    security(("bearer" = ["discharge"])),
    params(PageParams),
    responses(
        (status = 200, description = "Patients treatment asked to release, not yet released",
            body = Vec<PendingRelease>,
            headers(("link" = String, description = "`<…?limit=N&after=CURSOR>; rel=\"next\"` when more entries follow"))),
        QueryErrors, Unavailable,
    ))]
#[tracing::instrument(skip(state))]
pub async fn pending(
    State(state): State<AppState>,
    page: PageRequest,
) -> Result<(HeaderMap, Json<Vec<PendingRelease>>), ApiError> {
    let pending = sqlx::query_as!(
        PendingRelease,
        "select patient_id as id, time, next_state, post_medication, notes, id as position
         from release_queue
         where released_at is null and id > $1 and ($3::bigint is null or patient_id = $3)
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

#[derive(Debug, Deserialize, ToSchema)]
pub struct DischargeForm {
    id: PatientId,
    time: Text<100>,
    state: Disposition,
    #[serde(default)]
    post_medication: Note<1000>,
    #[serde(default)]
    notes: Note<2000>,
    #[serde(default)]
    next_visit: Note<100>,
}

/// Records the discharge, takes the patient off the pending list and publishes
/// `patient.admission` (for an admission) or `patient.discharge` (sent home) through the
/// outbox, all in one transaction.
#[utoipa::path(post, path = "/opd/release/discharge", tag = "release", operation_id = "record_release",
    security(("bearer" = ["discharge"])),
    request_body(content = DischargeForm, example = json!({
        "id": 200, "time": "2021 07 12 9:35 PM", "state": "discharge",
        "post_medication": "NM x 10 days", "next_visit": "2021 08 12 09:00AM"
    })),
    params(IdempotencyKey),
    responses(
        IdempotencyErrors,
        (status = 201, description = "Recorded; the patient leaves the pending list, and \
            `patient.admission` (with `\"state\": \"admission\"`) or `patient.discharge` is published", body = String, content_type = "application/json",
            example = json!("Patient discharge recorded successfully")),
        UnknownPatient, NotWaiting, BodyErrors, Unavailable,
    ))]
#[tracing::instrument(skip_all, fields(patient_id = %form.id.masked(), state = form.state.as_str()))]
pub async fn discharge(
    State(state): State<AppState>,
    context: EventContext,
    JsonBody(form): JsonBody<DischargeForm>,
) -> Result<(StatusCode, Json<&'static str>), ApiError> {
    let mut tx = state.pool.begin().await?;
    let release = sqlx::query!(
        r#"with taken as (
               update release_queue set released_at = now()
               where id = (
                   select id from release_queue
                   where patient_id = $1 and released_at is null
                   order by id
                   limit 1
                   for update
               )
               returning 1
           )
           select exists (select 1 from taken) as "taken!",
                  exists (select 1 from release_queue where patient_id = $1) as "known!""#,
        form.id.get(),
    )
    .fetch_one(&mut *tx)
    .await?;
    WAITING.take_off(form.id, release.taken, release.known)?;
    sqlx::query!(
        "insert into discharges (patient_id, time, state, post_medication, notes, next_visit)
         values ($1, $2, $3, $4, $5, $6)",
        form.id.get(),
        form.time.as_str(),
        form.state.as_str(),
        form.post_medication.as_deref(),
        form.notes.as_deref(),
        form.next_visit.as_deref(),
    )
    .execute(&mut *tx)
    .await?;
    match form.state {
        Disposition::Admission => {
            let event = PatientAdmissionRequested {
                id: form.id,
                time: form.time,
                notes: form.notes,
            };
            outbox::enqueue(&mut tx, &event, &context).await?;
        }
        Disposition::Discharge => {
            let event = PatientDischarged {
                id: form.id,
                time: form.time,
                next_visit: form.next_visit,
            };
            outbox::enqueue(&mut tx, &event, &context).await?;
        }
    }
    state.commit(tx).await?;
    tracing::info!("patient released");
    Ok((
        StatusCode::CREATED,
        Json("Patient discharge recorded successfully"),
    ))
}
