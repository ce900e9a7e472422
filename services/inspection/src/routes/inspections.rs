//! The queue of patients waiting for inspection, and inspection reports.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;

use opd_shared::domain::{Note, PatientId, Text};
use opd_shared::events::PatientSentForTreatment;
use opd_shared::events::outbox;
use opd_shared::events::outbox::EventContext;
use opd_shared::http::error::ApiError;
use opd_shared::http::openapi::{
    BodyErrors, IdempotencyErrors, IdempotencyKey, NotWaiting, PathErrors, QueryErrors,
    Unavailable, UnknownPatient,
};
use opd_shared::http::page::{PageParams, PageRequest};
use opd_shared::http::{JsonBody, PathParam};
use opd_shared::service::AppState;

use super::WAITING;

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingVisit {
    id: i64,
    token: i64,
    /// The site that gave the token: tokens count per site and day.
    #[schema(example = "hospital")]
    site: String,
    /// The entry's own number; the cursor of the next page.
    #[serde(skip)]
    #[schema(ignore)]
    entry: i64,
}

/// Patients waiting for inspection, in token order (oldest day first; on the same token, the
/// sites in alphabetical order).
#[utoipa::path(get, path = "/opd/inspection/pending", tag = "inspection", operation_id = "pending_inspection",
    security(("bearer" = ["clinician"])),
    params(PageParams),
    responses(
        (status = 200, description = "Registered patients not yet inspected, in token order",
            body = Vec<PendingVisit>,
            headers(("link" = String, description = "`<…?limit=N&after=CURSOR>; rel=\"next\"` when more entries follow")),
            example = json!([{ "id": 200, "token": 1, "site": "hospital" }])),
        QueryErrors, Unavailable,
    ))]
#[tracing::instrument(skip(state))]
pub async fn pending(
    State(state): State<AppState>,
    page: PageRequest,
) -> Result<(HeaderMap, Json<Vec<PendingVisit>>), ApiError> {
    // The cursor is the last entry of the previous page: the page goes on after its place in
    // the queue (none if it is not a visit: an empty page).
    let visits = sqlx::query_as!(
        PendingVisit,
        "select v.patient_id as id, v.token, v.site, v.entry
         from visits v
         where v.inspected_at is null
           and ($1::bigint is null
                or (v.registered_on, v.token, v.site)
                   > (select registered_on, token, site from visits where entry = $1))
           and ($3::bigint is null or v.patient_id = $3)
         order by v.registered_on, v.token, v.site
         limit $2",
        page.after,
        page.fetch(),
        page.patient_id(),
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(page.answer(visits, |visit| visit.entry))
}

/// The body of `POST /opd/inspection/record` (the book's `InspectionRequest`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct InspectionForm {
    id: PatientId,
    time: Text<100>,
    #[serde(default)]
    observations: Note<2000>,
    #[serde(default)]
    medication: Note<1000>,
    #[serde(default)]
    tests: Note<1000>,
    #[serde(default)]
    notes: Note<2000>,
}

/// Records an inspection, takes the patient's earliest waiting visit out of the queue and sends
/// them for treatment (`patient.treatment`, through the outbox, in the same transaction).
#[utoipa::path(post, path = "/opd/inspection/record", tag = "inspection", operation_id = "record_inspection",
    security(("bearer" = ["clinician"])),
    request_body(content = InspectionForm, example = json!({
        "id": 200, "time": "2021/07/12 10:21 AM", "observations": "ABC Syncrome",
        "medication": "XYZ x 3", "tests": "FBT, UC", "notes": "possible Covid-19"
    })),
    params(IdempotencyKey),
    responses(
        IdempotencyErrors,
        (status = 201, description = "Recorded; the patient leaves the pending list and \
            `patient.treatment` (the body) is published", body = PatientSentForTreatment),
        UnknownPatient, NotWaiting, BodyErrors, Unavailable,
    ))]
#[tracing::instrument(skip_all, fields(patient_id = %form.id.masked()))]
pub async fn record(
    State(state): State<AppState>,
    context: EventContext,
    JsonBody(form): JsonBody<InspectionForm>,
) -> Result<(StatusCode, Json<PatientSentForTreatment>), ApiError> {
    let mut tx = state.pool.begin().await?;
    let visit = sqlx::query!(
        r#"with taken as (
               update visits set inspected_at = now()
               where (registered_on, site, token) = (
                   select registered_on, site, token from visits
                   where patient_id = $1 and inspected_at is null
                   order by registered_on, token, site
                   limit 1
                   for update
               )
               returning 1
           )
           select exists (select 1 from taken) as "taken!",
                  exists (select 1 from visits where patient_id = $1) as "known!""#,
        form.id.get(),
    )
    .fetch_one(&mut *tx)
    .await?;
    WAITING.take_off(form.id, visit.taken, visit.known)?;
    sqlx::query!(
        "insert into inspections (patient_id, time, observations, medication, tests, notes)
         values ($1, $2, $3, $4, $5, $6)",
        form.id.get(),
        form.time.as_str(),
        form.observations.as_deref(),
        form.medication.as_deref(),
        form.tests.as_deref(),
        form.notes.as_deref(),
    )
    .execute(&mut *tx)
    .await?;
    let event = PatientSentForTreatment {
        id: form.id,
        medication: form.medication,
        tests: form.tests,
        notes: form.notes,
    };
    outbox::enqueue(&mut tx, &event, &context).await?;
    state.commit(tx).await?;
    tracing::info!("inspection recorded; patient sent for treatment");
    Ok((StatusCode::CREATED, Json(event)))
}

async fn known_patient(conn: &mut PgConnection, id: PatientId) -> Result<bool, sqlx::Error> {
    let known = sqlx::query_scalar!(
        r#"select exists (select 1 from visits where patient_id = $1) as "known!""#,
        id.get()
    )
    .fetch_one(conn)
    .await?;
    Ok(known)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InspectionView {
    id: i64,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    observations: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    medication: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tests: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

/// A patient's inspections, oldest first.
#[utoipa::path(get, path = "/opd/inspection/history/{id}", tag = "inspection", operation_id = "inspection_history",
    security(("bearer" = ["clinician"])),
    params(("id" = PatientId, Path, description = "The patient's id")),
    responses(
        (status = 200, description = "The patient's inspections, oldest first", body = Vec<InspectionView>),
        UnknownPatient, PathErrors, Unavailable,
    ))]
#[tracing::instrument(skip(state))]
pub async fn history(
    State(state): State<AppState>,
    PathParam(id): PathParam<PatientId>,
) -> Result<Json<Vec<InspectionView>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let inspections = sqlx::query_as!(
        InspectionView,
        "select patient_id as id, time, observations, medication, tests, notes
         from inspections
         where patient_id = $1
         -- Qualified: a bare `id` would name the output column, the patient's id.
         order by inspections.id",
        id.get(),
    )
    .fetch_all(&mut *conn)
    .await?;
    if inspections.is_empty() {
        WAITING.require_known(id, known_patient(&mut conn, id).await?)?;
    }
    Ok(Json(inspections))
}
