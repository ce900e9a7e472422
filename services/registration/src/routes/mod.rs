//! The HTTP API, as in the book: everything under `/opd/patient/`.

mod patients;
mod visits;
mod whereabouts;

use opd_shared::domain::PatientId;
use opd_shared::http::error::ApiError;
use opd_shared::service::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Each handler's `#[utoipa::path]` gives its method and path.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(patients::register))
        .routes(routes!(patients::update))
        .routes(routes!(patients::view))
        .routes(routes!(visits::next_visit, visits::next_visit_post))
        .routes(routes!(visits::reset, visits::reset_post))
        .routes(routes!(whereabouts::where_is))
}

/// The 404 of every route that names a patient who was never registered.
fn unknown_patient(id: PatientId) -> ApiError {
    ApiError::NotFound(format!(
        "no patient with id {id} is registered; register with POST /opd/patient/register"
    ))
}
