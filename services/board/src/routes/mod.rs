//! The board's HTTP API, all open to anyone (it shows tokens only, and hangs in a public
//! room): the page for a wall screen ([`screen`]), its event stream ([`events`]) and the same
//! state as JSON ([`state`]). Each handler finds the instance's [`crate::view::Board`] as an
//! `Extension`.

pub mod events;
pub mod screen;
pub mod state;

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use opd_shared::http::problem::Problem;
use opd_shared::service::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::view::Board;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(screen::page))
        .routes(routes!(screen::script))
        .routes(routes!(screen::style))
        .routes(routes!(state::state))
        .routes(routes!(events::events))
}

/// How long a request waits for a board that is still reading its bucket.
const LOADING_PATIENCE: Duration = Duration::from_secs(5);

/// 503 while this instance has not read the bucket once (it has just started, or NATS was
/// unreachable since): an empty board would look like an empty waiting room.
async fn loaded(board: &Board) -> Result<(), Response> {
    if board.ready_within(LOADING_PATIENCE).await {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "board-loading",
            "Board loading",
            "this board instance has not read the board's bucket yet (NATS may be unreachable)",
        )
        .retry_after(Duration::from_secs(1)))
    }
}
