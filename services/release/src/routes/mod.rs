//! The HTTP API, as in the book: everything under `/opd/release/`.

mod discharges;

use opd_shared::http::waiting_list::WaitingList;
use opd_shared::service::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Each handler's `#[utoipa::path]` gives its method and path.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(discharges::pending))
        .routes(routes!(discharges::discharge))
}

/// Patients treatment asked to release.
const WAITING: WaitingList = WaitingList {
    waiting_for: "for release",
    how_to_join: "treatment asks for a release with POST /opd/treatment/release",
    how_to_return: "the patient has already been released; a new release needs a new request from treatment (POST /opd/treatment/release)",
};
