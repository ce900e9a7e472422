//! The operator's path for parked messages: see them with their reason and payload, a page at a
//! time, and have them handled again once the cause is fixed. Mounted under `/admin/` on every
//! service that consumes events; it must not be reachable from outside the hospital's network.
//!
//! A retry handles the parked message from the database, as the consumer would have: decoded
//! from what was parked, its event id into the inbox (so it is never applied twice) and its
//! effect applied, and the row deleted, in one transaction
//! ([`crate::events::consumer::retry`]). Nothing is published: a consuming service has no right
//! to publish on any subject it consumes, so that its identity cannot feed itself forged
//! events, and a retry cannot fill the stream however often it is called. If the message still
//! cannot be handled it stays parked, with the new reason, and the answer says why.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::JSON_SAFE_MAX;
use crate::events::consumer::Retried;
use crate::http::PathParam;
use crate::http::error::ApiError;
use crate::http::openapi::{
    IdempotencyErrors, IdempotencyKey, PathErrors, QueryErrors, Unavailable,
};
use crate::http::page::PageRequest;
use crate::http::problem::Problem;
use crate::service::AppState;

/// The most dead letters one `POST /admin/dead-letters/retry` handles; `remaining` says how many
/// wait for the next call. Each is a transaction of its own: this bounds how long one request
/// holds the service's connections.
const RETRY_BATCH: i64 = 100;

/// Retries of every dead letter an instance starts, at most: one a second. With [`RETRY_BATCH`]
/// that bounds what a loop of such requests can ask of the database to 100 handlings a second.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

pub fn routes() -> OpenApiRouter<AppState> {
    let retry_all = OpenApiRouter::new().routes(routes!(retry_all)).route_layer(
        axum::middleware::from_fn_with_state(Gate::default(), one_at_a_time),
    );
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(retry_one))
        .merge(retry_all)
}

/// When the last retry was let through.
#[derive(Clone, Default)]
struct Gate(Arc<Mutex<Option<Instant>>>);

/// Lets a retry through when the previous one started [`RETRY_INTERVAL`] ago or more, and
/// answers any other with 429 and `Retry-After`.
async fn one_at_a_time(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let now = Instant::now();
    let wait = {
        let mut last = gate.0.lock().unwrap_or_else(PoisonError::into_inner);
        match *last {
            Some(at) if now.duration_since(at) < RETRY_INTERVAL => {
                Some(RETRY_INTERVAL - now.duration_since(at))
            }
            _ => {
                *last = Some(now);
                None
            }
        }
    };
    let Some(wait) = wait else {
        return next.run(request).await;
    };
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-requests",
        "Too many requests",
        format!(
            "every dead letter is retried at most once every {RETRY_INTERVAL:?} per instance; \
             try again in {} ms",
            wait.as_millis().max(1)
        ),
    )
    .retry_after(wait)
}

/// A parked message, as it was received.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetter {
    id: i64,
    /// The durable consumer that parked it.
    consumer: String,
    stream_sequence: i64,
    subject: String,
    event_id: Option<String>,
    reason: String,
    parked_at: DateTime<Utc>,
    /// Header name → values.
    #[schema(value_type = Object)]
    headers: serde_json::Value,
    /// The payload as text (bytes that are not UTF-8 are replaced).
    payload: String,
}

/// What a retry did.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct RetryReport {
    /// Dead letters handled now (or found handled already) and removed.
    retried: u64,
    /// Dead letters that still cannot be handled, and stay parked with the new reason.
    still_parked: u64,
    /// Dead letters after the last one this call tried: call again with `?after=` set to
    /// `next_after` for them.
    remaining: u64,
    /// The id of the last dead letter this call tried, when more follow. Letters that still
    /// fail stay first in the table, so a call without it would try them again and never reach
    /// the ones behind them.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<i64>,
}

/// Where a retry of every dead letter starts.
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RetryFrom {
    /// Only dead letters with a larger id: the `next_after` of the previous call.
    #[param(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    after: Option<i64>,
}

/// The page parameters of the dead-letter list (no patient filter: a parked payload may be
/// anything).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "documents the query string; PageRequest parses it"
)]
pub struct DeadLetterPage {
    /// The most entries to return: 1 to 1000, 100 if absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Where the previous page ended: copy it from that page's `Link: rel="next"` URL.
    #[param(minimum = 0)]
    after: Option<i64>,
}

/// The parked messages of this service's consumers, oldest first, a page at a time.
#[utoipa::path(get, path = "/admin/dead-letters", tag = "admin", operation_id = "list_dead_letters",
    security(("bearer" = ["operator"])),
    params(DeadLetterPage),
    responses(
        (status = 200, description = "The parked messages; a `Link: rel=\"next\"` header when \
            more follow", body = Vec<DeadLetter>),
        QueryErrors, Unavailable,
    ))]
#[tracing::instrument(skip(state))]
pub async fn list(
    State(state): State<AppState>,
    page: PageRequest,
) -> Result<(HeaderMap, Json<Vec<DeadLetter>>), ApiError> {
    if page.patient_id().is_some() {
        return Err(ApiError::InvalidQuery(
            "dead letters cannot be filtered by patient: a parked payload may not name one".into(),
        ));
    }
    let rows = sqlx::query!(
        "select id, consumer, stream_sequence, subject, event_id, reason, parked_at, headers,
                payload
         from dead_letters
         where id > $1
         order by id
         limit $2",
        page.after.unwrap_or(0),
        page.fetch(),
    )
    .fetch_all(&state.pool)
    .await?;
    let letters = rows
        .into_iter()
        .map(|row| DeadLetter {
            id: row.id,
            consumer: row.consumer,
            stream_sequence: row.stream_sequence,
            subject: row.subject,
            event_id: row.event_id,
            reason: row.reason,
            parked_at: row.parked_at,
            headers: row.headers,
            payload: String::from_utf8_lossy(&row.payload).into_owned(),
        })
        .collect();
    Ok(page.answer(letters, |letter| letter.id))
}

/// Handles one parked message again, once its cause is fixed.
#[utoipa::path(post, path = "/admin/dead-letters/{id}/retry", tag = "admin",
    security(("bearer" = ["operator"])),
    operation_id = "retry_dead_letter",
    params(
        IdempotencyKey,
        ("id" = i64, Path, description = "The dead letter's id")),
    responses(
        IdempotencyErrors,
        (status = 200, description = "Handled (or found handled already) and removed",
            body = RetryReport, example = json!({ "retried": 1, "still_parked": 0, "remaining": 0 })),
        (status = 404, description = "No such dead letter (`/problems/not-found`)",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It still cannot be handled; it stays parked with the new \
            reason, which the problem's detail gives (`/problems/conflict`)",
            body = Problem, content_type = "application/problem+json"),
        PathErrors, Unavailable,
    ))]
#[tracing::instrument(skip(state))]
pub(crate) async fn retry_one(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<Json<RetryReport>, ApiError> {
    match retry(&state, id).await? {
        Retried::Applied | Retried::Duplicate => Ok(Json(RetryReport {
            retried: 1,
            ..RetryReport::default()
        })),
        Retried::NotFound => Err(ApiError::NotFound(format!(
            "there is no dead letter {id}; GET /admin/dead-letters lists them"
        ))),
        Retried::StillParked(reason) => Err(ApiError::Conflict(format!(
            "dead letter {id} still cannot be handled, and stays parked: {reason}"
        ))),
        Retried::Unavailable(reason) => Err(unavailable(&reason)),
    }
}

/// Handles the parked messages again, oldest first, up to 100 a call.
#[utoipa::path(post, path = "/admin/dead-letters/retry", tag = "admin",
    security(("bearer" = ["operator"])),
    operation_id = "retry_all_dead_letters",
    params(IdempotencyKey, RetryFrom),
    responses(
        IdempotencyErrors,
        (status = 200, description = "What became of them; `remaining` counts those after the \
            last one tried, for a call with `?after=` set to `next_after`", body = RetryReport,
            example = json!({ "retried": 3, "still_parked": 1, "remaining": 0 })),
        TooManyRetries, QueryErrors, Unavailable,
    ))]
#[tracing::instrument(skip(state, uri))]
pub(crate) async fn retry_all(
    State(state): State<AppState>,
    uri: axum::http::Uri,
) -> Result<Json<RetryReport>, ApiError> {
    let axum::extract::Query(from) = axum::extract::Query::<RetryFrom>::try_from_uri(&uri)
        .map_err(|rejection| ApiError::InvalidQuery(rejection.body_text()))?;
    let after = from.after.unwrap_or(0);
    // The range the document gives (`RetryFrom`): beyond it, an id no JSON client was handed.
    if !(0..=JSON_SAFE_MAX).contains(&after) {
        return Err(ApiError::InvalidQuery(format!(
            "after is from 0 to {JSON_SAFE_MAX}: copy it from next_after"
        )));
    }
    let ids = sqlx::query_scalar!(
        "select id from dead_letters where id > $1 order by id limit $2",
        after,
        RETRY_BATCH
    )
    .fetch_all(&state.pool)
    .await?;
    let last = ids.last().copied();
    let mut answer = RetryReport::default();
    for id in ids {
        match retry(&state, id).await? {
            Retried::Applied | Retried::Duplicate => answer.retried += 1,
            Retried::StillParked(_) => answer.still_parked += 1,
            // Another operator handled it meanwhile.
            Retried::NotFound => {}
            Retried::Unavailable(reason) => return Err(unavailable(&reason)),
        }
    }
    let left = sqlx::query_scalar!(
        r#"select count(*) as "count!" from dead_letters where id > $1"#,
        last.unwrap_or(after)
    )
    .fetch_one(&state.pool)
    .await?;
    answer.remaining = u64::try_from(left).unwrap_or_default();
    answer.next_after = last.filter(|_| answer.remaining > 0);
    Ok(Json(answer))
}

/// The answer to a retry within a second of the previous one.
pub struct TooManyRetries;

impl utoipa::IntoResponses for TooManyRetries {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        [(
            "429".to_owned(),
            crate::http::openapi::problem(
                "A retry of every dead letter started less than a second ago on this instance; \
                 `Retry-After` says when to try again (`/problems/too-many-requests`)",
            ),
        )]
        .into()
    }
}

/// Dead letter `id`, handled again by the consumer that parked it.
async fn retry(state: &AppState, id: i64) -> Result<Retried, ApiError> {
    let consumer = sqlx::query_scalar!("select consumer from dead_letters where id = $1", id)
        .fetch_optional(&state.pool)
        .await?;
    let Some(consumer) = consumer else {
        return Ok(Retried::NotFound);
    };
    let Some(subscription) = state.service.consumer(&consumer) else {
        return Err(ApiError::Conflict(format!(
            "dead letter {id} was parked by {consumer}, which this service no longer runs"
        )));
    };
    Ok((subscription.retry)(state.pool.clone(), subscription.durable, id).await)
}

fn unavailable(reason: &str) -> ApiError {
    tracing::warn!(reason, "dead letter not handled again");
    ApiError::Unavailable("the database cannot handle the dead letter now; retry later".into())
}
