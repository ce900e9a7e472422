//! The HTTP API, as in the book: everything under `/opd/release/`.

mod discharges;

use axum::Router;
use axum::routing::{get, post};
use sqlx::PgPool;

use crate::SERVICE;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/opd/release/", SERVICE.home_route())
        .route("/opd/release/pending", get(discharges::pending))
        .route("/opd/release/discharge", post(discharges::discharge))
        .with_state(state)
}
