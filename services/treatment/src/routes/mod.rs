//! The HTTP API, as in the book: everything under `/opd/treatment/`.

mod medications;
mod patients;
mod releases;
mod tests;

use axum::Router;
use axum::routing::{get, post};
use opd_shared::service::{AppState, home};
use opd_shared::waiting_list::WaitingList;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/opd/treatment/", get(home))
        .route("/opd/treatment/pending", get(patients::pending))
        .route("/opd/treatment/medication", post(medications::record))
        .route("/opd/treatment/history/{id}", get(medications::history))
        .route("/opd/treatment/tests", post(tests::record))
        .route("/opd/treatment/tests/{id}", get(tests::history))
        .route("/opd/treatment/release", post(releases::request))
}

/// Patients inspection sent for treatment.
const WAITING: WaitingList = WaitingList {
    waiting_for: "for treatment",
    how_to_join: "record an inspection first (POST /opd/inspection/record)",
    how_to_return: "a new treatment needs a new inspection (POST /opd/inspection/record)",
};
