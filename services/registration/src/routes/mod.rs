//! The HTTP API, as in the book: everything under `/opd/patient/`.

mod patients;
mod tokens;

use axum::Router;
use axum::routing::{get, post, put};
use sqlx::PgPool;

use crate::SERVICE;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/opd/patient/", SERVICE.home_route())
        .route("/opd/patient/register", post(patients::register))
        .route("/opd/patient/update", put(patients::update))
        .route("/opd/patient/view/{id}", get(patients::view))
        .route("/opd/patient/token/{id}", get(tokens::next_visit))
        .route("/opd/patient/token/reset/{n}", get(tokens::reset))
        .with_state(state)
}
