//! The HTTP API, as in the book: everything under `/opd/inspection/`.

mod inspections;

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
        .route("/opd/inspection/", SERVICE.home_route())
        .route("/opd/inspection/pending", get(inspections::pending))
        .route("/opd/inspection/record", post(inspections::record))
        .route("/opd/inspection/history/{id}", get(inspections::history))
        .with_state(state)
}
