//! The HTTP API, as in the book: everything under `/opd/release/`.

mod discharges;

use axum::Router;
use axum::routing::{get, post};
use opd_shared::service::{AppState, home};
use opd_shared::waiting_list::WaitingList;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/opd/release/", get(home))
        .route("/opd/release/pending", get(discharges::pending))
        .route("/opd/release/discharge", post(discharges::discharge))
}

/// Patients treatment asked to release.
const WAITING: WaitingList = WaitingList {
    waiting_for: "for release",
    how_to_join: "treatment asks for a release with POST /opd/treatment/release",
    how_to_return: "the patient has already been released; a new release needs a new request from treatment (POST /opd/treatment/release)",
};
