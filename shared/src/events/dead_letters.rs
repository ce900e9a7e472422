//! The operator's path for parked messages: see them with their reason and payload, and put
//! them back on the stream once the cause is fixed. Mounted under `/admin/` on every service
//! that consumes events; it must not be reachable from outside the hospital's network.
//!
//! A retry publishes the message again as it was received (headers, payload) on the consumer's
//! own retry subject (`patient.retry.<durable>`, see [`crate::events::retry_subject`]), so it
//! takes the normal path to that consumer alone: it decodes it, the event id keeps it from
//! being applied twice, and if it still cannot be handled it is parked again, as a new dead
//! letter.

use std::time::Duration;

use async_nats::HeaderMap;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::PathParam;
use crate::http::error::ApiError;
use crate::http::openapi::{IdempotencyErrors, IdempotencyKey, PathErrors, Unavailable};
use crate::http::problem::Problem;
use crate::service::AppState;

/// How long a retry waits for JetStream to store the message.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(retry_one))
        .routes(routes!(retry_all))
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

#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    /// Messages put back on the stream.
    retried: u64,
}

/// Every parked message of this service's consumers, oldest first.
#[utoipa::path(get, path = "/admin/dead-letters", tag = "admin", operation_id = "list_dead_letters",
    responses(
        (status = 200, description = "The parked messages", body = Vec<DeadLetter>),
        Unavailable,
    ))]
#[tracing::instrument(skip(state))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    let rows = sqlx::query!(
        "select id, consumer, stream_sequence, subject, event_id, reason, parked_at, headers,
                payload
         from dead_letters
         order by id",
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(
        rows.into_iter()
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
            .collect(),
    ))
}

/// Puts one parked message back on the stream, once its cause is fixed.
#[utoipa::path(post, path = "/admin/dead-letters/{id}/retry", tag = "admin",
    operation_id = "retry_dead_letter",
    params(
        IdempotencyKey,
        ("id" = i64, Path, description = "The dead letter's id")),
    responses(
        IdempotencyErrors,
        (status = 202, description = "Published again; the consumer handles it shortly",
            body = Retried, example = json!({ "retried": 1 })),
        (status = 404, description = "No such dead letter (`/problems/not-found`)",
            body = Problem, content_type = "application/problem+json"),
        PathErrors, Unavailable,
    ))]
#[tracing::instrument(skip(state))]
pub(crate) async fn retry_one(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<(StatusCode, Json<Retried>), ApiError> {
    if !retry(&state, id).await? {
        return Err(ApiError::NotFound(format!(
            "there is no dead letter {id}; GET /admin/dead-letters lists them"
        )));
    }
    Ok((StatusCode::ACCEPTED, Json(Retried { retried: 1 })))
}

/// Puts every parked message back on the stream, oldest first.
#[utoipa::path(post, path = "/admin/dead-letters/retry", tag = "admin",
    operation_id = "retry_all_dead_letters",
    params(IdempotencyKey),
    responses(
        IdempotencyErrors,
        (status = 202, description = "Published again; the consumers handle them shortly",
            body = Retried, example = json!({ "retried": 3 })),
        Unavailable,
    ))]
#[tracing::instrument(skip(state))]
pub(crate) async fn retry_all(
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<Retried>), ApiError> {
    let ids = sqlx::query_scalar!("select id from dead_letters order by id")
        .fetch_all(&state.pool)
        .await?;
    let mut retried = 0;
    for id in ids {
        // Another operator may have retried it meanwhile: that one is simply skipped.
        if retry(&state, id).await? {
            retried += 1;
        }
    }
    Ok((StatusCode::ACCEPTED, Json(Retried { retried })))
}

/// Publishes dead letter `id` again and removes it, in that order: the row goes only once
/// JetStream has the message. False if there is no such row.
async fn retry(state: &AppState, id: i64) -> Result<bool, ApiError> {
    let jetstream = &state.jetstream;
    let mut tx = state.pool.begin().await?;
    let Some(row) = sqlx::query!(
        "delete from dead_letters where id = $1 returning consumer, subject, headers, payload",
        id,
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(false);
    };
    let mut headers = HeaderMap::new();
    for (name, values) in row.headers.as_object().into_iter().flatten() {
        for value in values
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
        {
            headers.append(name.as_str(), value);
        }
    }
    // One message id per dead letter: a retry sent twice within JetStream's duplicate window
    // is stored once.
    headers.insert(
        crate::events::headers::MESSAGE_ID,
        format!("dead-letter-{}-{id}", row.consumer).as_str(),
    );
    let unavailable = |error: String| {
        tracing::warn!(%error, id, "dead letter not published again");
        ApiError::Unavailable("NATS did not take the message; retry later".into())
    };
    // To this consumer's own retry subject, not the event's: the other consumers of the subject
    // have their copy already, and the subject belongs to the service that produces it.
    let subject = crate::events::retry_subject(&row.consumer);
    let ack = jetstream
        .publish_with_headers(subject, headers, row.payload.into())
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    match tokio::time::timeout(PUBLISH_TIMEOUT, ack).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(unavailable(error.to_string())),
        Err(_) => {
            return Err(unavailable(format!(
                "no acknowledgement in {PUBLISH_TIMEOUT:?}"
            )));
        }
    }
    tx.commit().await?;
    tracing::info!(id, consumer = %row.consumer, subject = %row.subject, "dead letter published again");
    Ok(true)
}
