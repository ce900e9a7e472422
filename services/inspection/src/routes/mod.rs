//! The HTTP API, as in the book: everything under `/opd/inspection/`.

mod inspections;

use opd_shared::http::waiting_list::WaitingList;
use opd_shared::service::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Each handler's `#[utoipa::path]` gives its method and path.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(inspections::pending))
        .routes(routes!(inspections::record))
        .routes(routes!(inspections::history))
}

/// Registered patients waiting for inspection.
const WAITING: WaitingList = WaitingList {
    waiting_for: "for inspection",
    how_to_join: "register the patient first (POST /opd/patient/register on the registration service)",
    how_to_return: "a new visit needs a new token (GET /opd/patient/token/{id} on the registration service)",
};
