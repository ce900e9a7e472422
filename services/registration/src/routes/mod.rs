//! The HTTP API, as in the book: everything under `/opd/patient/`.

mod patients;
mod visits;

use axum::Router;
use axum::routing::{get, post, put};
use opd_shared::domain::PatientId;
use opd_shared::error::ApiError;
use opd_shared::events::PatientRegistered;
use opd_shared::outbox::{self, EventContext};
use opd_shared::service::{AppState, home};
use sqlx::PgConnection;

use crate::token_counter::{self, IssuedToken};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/opd/patient/", get(home))
        .route("/opd/patient/register", post(patients::register))
        .route("/opd/patient/update", put(patients::update))
        .route("/opd/patient/view/{id}", get(patients::view))
        .route("/opd/patient/token/{id}", get(visits::next_visit))
        .route("/opd/patient/token/reset/{n}", get(visits::reset))
}

/// The 404 of every route that names a patient who was never registered.
fn unknown_patient(id: PatientId) -> ApiError {
    ApiError::NotFound(format!(
        "no patient with id {id} is registered; register with POST /opd/patient/register"
    ))
}

/// Hands patient `id` the day's next token and announces the visit as `patient.register`, both
/// in the caller's transaction: inspection queues the patient once it commits.
async fn issue_token(
    tx: &mut PgConnection,
    id: PatientId,
    context: &EventContext,
) -> Result<IssuedToken, ApiError> {
    let issued = token_counter::issue(tx, id).await?;
    let event = PatientRegistered {
        id: issued.id,
        token: issued.token,
    };
    outbox::enqueue(tx, &event, context).await?;
    Ok(issued)
}
