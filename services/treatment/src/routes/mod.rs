//! The HTTP API, as in the book: everything under `/opd/treatment/`.

mod lab_tests;
mod medications;
mod patients;
mod releases;

use opd_shared::http::waiting_list::WaitingList;
use opd_shared::service::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Each handler's `#[utoipa::path]` gives its method and path.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(patients::pending))
        .routes(routes!(medications::record))
        .routes(routes!(medications::history))
        .routes(routes!(lab_tests::record))
        .routes(routes!(lab_tests::history))
        .routes(routes!(releases::request))
}

/// Patients inspection sent for treatment.
const WAITING: WaitingList = WaitingList {
    waiting_for: "for treatment",
    how_to_join: "record an inspection first (POST /opd/inspection/record)",
    how_to_return: "a new treatment needs a new inspection (POST /opd/inspection/record)",
};
