//! `GET /opd/board/state`: the board as JSON, for other screens and programs.

use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use opd_shared::http::problem::Problem;

use crate::view::{Board, Snapshot};

/// Today's board: per stage, the tokens waiting in order of arrival and the token called last.
#[utoipa::path(get, path = "/opd/board/state", tag = "board", operation_id = "board_state",
    security(()),
    responses(
        (status = 200, description = "Today's board", body = Snapshot),
        (status = 503, description = "This instance has not read the board yet \
            (`/problems/board-loading`); retry after `Retry-After`", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn state(Extension(board): Extension<Board>) -> Response {
    if let Err(loading) = super::loaded(&board).await {
        return loading;
    }
    Json(board.snapshot()).into_response()
}
