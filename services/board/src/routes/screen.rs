//! `GET /opd/board/screen`: the page for a wall screen, and its script and style sheet. All
//! three are compiled in: the screen needs nothing from the internet, and no framework.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("../../assets/screen.html");
const SCRIPT: &str = include_str!("../../assets/screen.js");
const STYLE: &str = include_str!("../../assets/screen.css");

/// The page may load its own script and style sheet and open its own event stream, nothing
/// else; no other site may frame it.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The waiting-room board: three columns (inspection, treatment, release), each with the
/// token being seen now and the tokens waiting; tokens only, no names.
#[utoipa::path(get, path = "/opd/board/screen", tag = "board", operation_id = "board_screen",
    security(()),
    responses((status = 200, description = "The page (HTML)", body = String,
        content_type = "text/html")))]
pub async fn page() -> Response {
    asset(PAGE, "text/html; charset=utf-8")
}

/// The page's script.
#[utoipa::path(get, path = "/opd/board/screen.js", tag = "board", operation_id = "board_script",
    security(()),
    responses((status = 200, description = "The page's script", body = String,
        content_type = "text/javascript")))]
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// The page's style sheet.
#[utoipa::path(get, path = "/opd/board/screen.css", tag = "board", operation_id = "board_style",
    security(()),
    responses((status = 200, description = "The page's style sheet", body = String,
        content_type = "text/css")))]
pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Checked again on each load: a new version is picked up by a reload.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}
