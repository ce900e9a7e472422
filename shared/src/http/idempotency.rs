//! `Idempotency-Key` on POST requests: a client that is not sure its request arrived (a timeout,
//! a dropped connection) sends it again with the same key, and gets the first answer back
//! instead of a second registration, inspection or release request.
//!
//! The first request with a key records it before it runs, and its answer after. A repeat finds
//! the record: the same request gets the recorded answer (`Idempotent-Replayed: true`); another
//! request under the same key, and a repeat while the first still runs, conflict with the key's
//! first use: 409, each with its own problem type. An answer
//! of 503 for a database outage, where nothing happened, releases the key, so that the retry
//! runs; a request abandoned by the timeout keeps it in progress, as it may still complete.
//! Keys are kept for `http.idempotency_retention`.
//!
//! The record and the answer are two transactions around the effect's. If the process dies
//! while a request runs, its key stays "in progress"; once it is older than `abandon_after`
//! (longer than any request may run), a repeat may take the key over and run the request
//! again. Whether the effect was committed before the crash is known in one of two ways:
//! - handlers whose effect a repeat would simply add again (a new visit token, a medication, a
//!   test result) record [`Effect`] in the effect's own transaction; a repeat that finds it
//!   gets a 409 `answer-lost` instead of a rerun;
//! - every other effect is refused by a state rule when repeated (already registered, not
//!   waiting, a release already requested, already released): the rerun answers that 409.
//!
//! Either way nothing is done twice; only the first answer is lost.

use axum::body::{Body, Bytes, to_bytes};
use std::convert::Infallible;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::{PgConnection, PgPool};

use crate::http::problem::Problem;

pub(crate) const HEADER: &str = "idempotency-key";
pub(crate) const REPLAYED: &str = "idempotent-replayed";

/// What the middleware needs: where keys are kept, and how much body it may read.
#[derive(Clone)]
pub struct Keys {
    pub pool: PgPool,
    /// `http.body_limit_bytes`: the middleware reads the body before the handler's extractor
    /// would enforce it.
    pub body_limit: usize,
    /// A key still in progress after this long belongs to a request that died with its
    /// process: a repeat may take it over. Longer than `http.request_timeout`, which bounds
    /// every live request.
    pub abandon_after: std::time::Duration,
}

/// The middleware; mount it with `axum::middleware::from_fn_with_state(keys, idempotency::layer)`.
pub async fn layer(State(keys): State<Keys>, request: Request, next: Next) -> Response {
    let Keys {
        pool,
        body_limit,
        abandon_after,
    } = keys;
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(HEADER).cloned() else {
        return next.run(request).await;
    };
    let key = match parse_key(&key) {
        Ok(key) => key,
        Err(problem) => return problem.into_response(),
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, body_limit).await else {
        return crate::http::error::ApiError::PayloadTooLarge.into_response();
    };
    // The query string is part of what the request asks: the same key with another query is
    // another request, not a repeat.
    let path = parts.uri.path_and_query().map_or_else(
        || parts.uri.path().to_owned(),
        |whole| whole.as_str().to_owned(),
    );
    let mut parts = parts;
    parts.extensions.insert(Effect(Some(key.clone())));
    match begin(&pool, &key, &path, &body, abandon_after).await {
        Ok(Begun::First) => {}
        Ok(Begun::Repeat(answer)) => return answer,
        Err(error) => return unavailable(&error),
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    finish(&pool, &key, response).await
}

fn parse_key(value: &HeaderValue) -> Result<String, Problem> {
    let key = value.to_str().unwrap_or_default();
    if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(key.to_owned())
    } else {
        Err(bad_request(
            "Idempotency-Key must be 1 to 255 visible ASCII characters, e.g. a UUID",
        ))
    }
}

enum Begun {
    First,
    Repeat(Response),
}

/// Records the key, or answers a repeat.
async fn begin(
    pool: &PgPool,
    key: &str,
    path: &str,
    body: &Bytes,
    abandon_after: std::time::Duration,
) -> Result<Begun, sqlx::Error> {
    let inserted = sqlx::query!(
        "insert into idempotency_keys (key, method, path, request_hash)
         values ($1, 'POST', $2, sha256($3))
         on conflict (key) do nothing",
        key,
        path,
        body.as_ref(),
    )
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Begun::First);
    }
    let Some(first) = sqlx::query!(
        r#"select path, status, content_type, response_body, effect_committed,
                  created_at < now() - make_interval(secs => $2) as "abandoned!",
                  coalesce(request_hash, sha256(request_body)) = sha256($3) as "same_body!"
           from idempotency_keys where key = $1"#,
        key,
        abandon_after.as_secs_f64(),
        body.as_ref(),
    )
    .fetch_optional(pool)
    .await?
    else {
        // Released in between (its request failed for a passing reason): this one may run.
        return Box::pin(begin(pool, key, path, body, abandon_after)).await;
    };
    if first.path != path || !first.same_body {
        return Ok(Begun::Repeat(
            Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-reused",
                "Idempotency key reused",
                "this Idempotency-Key was used for a different request; use a new key for a new \
                 request",
            )
            .into_response(),
        ));
    }
    let Some(status) = first.status else {
        if first.abandoned && first.effect_committed {
            return Ok(Begun::Repeat(
                Problem::new(
                    StatusCode::CONFLICT,
                    "answer-lost",
                    "Answer lost",
                    "the first request with this Idempotency-Key took effect, but the service \
                     stopped before it could answer; look the result up instead of repeating it",
                )
                .into_response(),
            ));
        }
        if first.abandoned && take_over(pool, key, abandon_after).await? {
            tracing::warn!("taking over an idempotency key abandoned by a request that died");
            return Ok(Begun::First);
        }
        return Ok(Begun::Repeat(
            Problem::new(
                StatusCode::CONFLICT,
                "request-in-progress",
                "Request in progress",
                "the first request with this Idempotency-Key has not finished; ask again shortly",
            )
            .into_response(),
        ));
    };
    let status = u16::try_from(status)
        .ok()
        .and_then(|status| StatusCode::from_u16(status).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, first.response_body.unwrap_or_default()).into_response();
    if let Some(content_type) = first
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    Ok(Begun::Repeat(response))
}

/// The idempotency key of the request at hand, for handlers whose effect a repeat would add
/// again: [`Effect::committed_in`] marks the key in the effect's own transaction. Without a key
/// (GET, or a POST without the header) it does nothing.
#[derive(Clone, Debug, Default)]
pub struct Effect(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Effect {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned().unwrap_or_default())
    }
}

impl Effect {
    /// Marks the key as having taken effect; call it inside the effect's transaction.
    pub async fn committed_in(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if let Some(key) = &self.0 {
            sqlx::query!(
                "update idempotency_keys set effect_committed = true where key = $1",
                key
            )
            .execute(conn)
            .await?;
        }
        Ok(())
    }

    /// Whether the request carries a key, i.e. whether its effect needs a transaction.
    pub fn is_keyed(&self) -> bool {
        self.0.is_some()
    }
}

/// Claims a key left in progress by a dead request; false if another repeat claimed it first.
async fn take_over(
    pool: &PgPool,
    key: &str,
    abandon_after: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query!(
        "update idempotency_keys set created_at = now()
         where key = $1 and status is null and not effect_committed
           and created_at < now() - make_interval(secs => $2)",
        key,
        abandon_after.as_secs_f64(),
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(claimed == 1)
}

/// Records the answer for repeats, or releases the key when nothing happened.
async fn finish(pool: &PgPool, key: &str, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let body = match to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(error) => {
            return crate::http::error::ApiError::Internal(anyhow::anyhow!(
                "reading the answer to an idempotent request: {error}"
            ))
            .into_response();
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    // A 503 from the handler (the database could not serve it) means nothing was done: let
    // the retry run. A timeout never gets here: the timeout layer outside drops this future,
    // and the key stays in progress, as the request may still complete.
    let recorded = if parts.status == StatusCode::SERVICE_UNAVAILABLE {
        sqlx::query!("delete from idempotency_keys where key = $1", key)
            .execute(pool)
            .await
    } else {
        sqlx::query!(
            "update idempotency_keys
             set status = $2, content_type = $3, response_body = $4, completed_at = now()
             where key = $1",
            key,
            i16::try_from(parts.status.as_u16()).unwrap_or(i16::MAX),
            content_type,
            body.as_ref(),
        )
        .execute(pool)
        .await
    };
    if let Err(error) = recorded {
        tracing::warn!(%error, "the answer to an idempotent request was not recorded");
    }
    Response::from_parts(parts, Body::from(body))
}

fn bad_request(detail: &str) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-idempotency-key",
        "Invalid idempotency key",
        detail,
    )
}

fn unavailable(error: &sqlx::Error) -> Response {
    tracing::warn!(%error, "idempotency key not recorded");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "service-unavailable",
        "Service unavailable",
        "the database cannot serve this request right now; retry later",
    )
    .into_response()
}
