//! The HTTP API, as in the book: everything under `/opd/inspection/`.

mod inspections;

use axum::Router;
use axum::routing::{get, post};
use opd_shared::service::{AppState, home};
use opd_shared::waiting_list::WaitingList;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/opd/inspection/", get(home))
        .route("/opd/inspection/pending", get(inspections::pending))
        .route("/opd/inspection/record", post(inspections::record))
        .route("/opd/inspection/history/{id}", get(inspections::history))
}

/// Registered patients waiting for inspection.
const WAITING: WaitingList = WaitingList {
    waiting_for: "for inspection",
    how_to_join: "register the patient first (POST /opd/patient/register on the registration service)",
    how_to_return: "a new visit needs a new token (GET /opd/patient/token/{id} on the registration service)",
};
