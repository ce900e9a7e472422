//! Maintenance mode: while the control plane has put the instance into maintenance, a request
//! that would change state (any method but GET, HEAD and OPTIONS) is answered 503 with
//! `Retry-After`, and reads go on. Placed outside the idempotency layer, so that a refused
//! request touches no table (a migration may be running) and its retry, with the same
//! `Idempotency-Key`, is carried out once maintenance is over.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::control::state::Control;
use crate::http::problem::Problem;

pub(crate) async fn layer(
    State(control): State<Control>,
    request: Request,
    next: Next,
) -> Response {
    let reads = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    match control.maintenance() {
        Some(maintenance) if !reads => {
            let reason = if maintenance.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", maintenance.reason)
            };
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "maintenance",
                "Under maintenance",
                format!(
                    "this service is under maintenance since {}{reason}: reads work, changes \
                     do not; try again later",
                    maintenance.since.format("%H:%M:%S UTC")
                ),
            )
            .retry_after(maintenance.retry_after)
        }
        _ => next.run(request).await,
    }
}
