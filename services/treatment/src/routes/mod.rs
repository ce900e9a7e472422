//! The HTTP API, as in the book: everything under `/opd/treatment/`.

mod medications;
mod patients;
mod releases;
mod tests;

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
        .route("/opd/treatment/", SERVICE.home_route())
        .route("/opd/treatment/pending", get(patients::pending))
        .route("/opd/treatment/medication", post(medications::record))
        .route("/opd/treatment/history/{id}", get(medications::history))
        .route("/opd/treatment/tests", post(tests::record))
        .route("/opd/treatment/tests/{id}", get(tests::history))
        .route("/opd/treatment/release", post(releases::request))
        .with_state(state)
}
