//! The HTTP API, as in the book: everything under `/opd/patient/`.

mod patients;
mod visits;

use axum::Router;
use axum::routing::{get, post, put};
use opd_shared::domain::PatientId;
use opd_shared::error::ApiError;
use opd_shared::service::{AppState, home};

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
