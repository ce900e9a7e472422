//! HTTP plumbing shared by every API: extractors that answer with problem details, the common
//! middleware stack and the server loop with graceful shutdown; and, in the modules below, the
//! errors and their problem documents, idempotency keys, paged lists, the OpenAPI document and
//! the health routes.

pub mod error;
pub mod guard;
pub mod health;
pub mod idempotency;
pub(crate) mod maintenance;
pub mod openapi;
pub mod page;
pub mod problem;
pub mod waiting_list;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Router, extract::DefaultBodyLimit};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::http::error::ApiError;
use crate::http::problem::Problem;
use crate::infra::config::HttpSettings;

const REQUEST_ID_HEADER: &str = "x-request-id";

/// A JSON request body. It must be sent as JSON (`application/json`, or a `+json` type), or 415:
/// a form on another site can post text that parses as JSON, but cannot send that content type
/// without the browser asking the service first. `http.accept_form_encoded_json` also takes the
/// book's curl commands, which send JSON with `-d` and no header, that is as
/// `application/x-www-form-urlencoded`. Syntax errors are 400; a missing or invalid field is 422
/// and named.
pub struct JsonBody<T>(pub T);

/// Whether bodies sent as forms are taken as JSON (`http.accept_form_encoded_json`), for
/// [`JsonBody`]; the common layers put it in every request's extensions.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FormEncodedJson(pub(crate) bool);

/// Whether `content_type` says JSON, or (where `form_too`) a form or nothing, as curl's `-d`.
fn is_json(content_type: Option<&HeaderValue>, form_too: bool) -> bool {
    let Some(value) = content_type else {
        return form_too;
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
        || (form_too && essence == "application/x-www-form-urlencoded")
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let form_too = request
            .extensions()
            .get::<FormEncodedJson>()
            .is_some_and(|policy| policy.0);
        if !is_json(
            request.headers().get(axum::http::header::CONTENT_TYPE),
            form_too,
        ) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::MalformedJson(rejection.body_text())
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Decodes JSON, naming the field that is wrong.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson(
            "the request body is empty; a JSON object is expected".into(),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = without_position(&inner);
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." {
                    missing_field_name(&message).unwrap_or_default()
                } else {
                    path
                };
                ApiError::InvalidField { field, message }
            }
            _ => ApiError::MalformedJson(message),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::MalformedJson(without_position(&e)))?;
    Ok(value)
}

fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

/// serde reports a missing field at the parent's path; the name is in the message.
fn missing_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// The one path parameter of a route, parsed with `FromStr` (the same rules as a query string or
/// a curl command line give it); a parse failure is a 400 problem rather than axum's plain text.
#[derive(Debug)]
pub struct PathParam<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParam<T>
where
    T: std::str::FromStr + Send,
    T::Err: std::fmt::Display,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(text) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|rejection: PathRejection| ApiError::InvalidPath(rejection.body_text()))?;
        text.parse().map(PathParam).map_err(|error: T::Err| {
            ApiError::InvalidPath(format!("cannot parse {text:?}: {error}"))
        })
    }
}

/// The `x-request-id` of the current request (set by the middleware when the client sent none).
#[derive(Debug, Clone)]
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestId(
            parts
                .headers
                .get(REQUEST_ID_HEADER)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
        ))
    }
}

/// Adds what every API needs around its routes: problem details for unknown routes and methods,
/// request ids (kept from the client when plain and short, else generated; echoed in the
/// response), the host and cross-site checks of [`guard`], a trace span per
/// request named by its matched route (joining the caller's trace when it sends a
/// `traceparent`), request counts and latencies by route (`/metrics`), a body size limit, and a
/// 500 problem instead of a dropped connection should a handler ever panic.
pub(crate) fn with_common_layers(
    router: Router,
    settings: &HttpSettings,
    metrics: Arc<crate::infra::metrics::Metrics>,
) -> Router {
    let limits = Limits {
        permits: Arc::new(Semaphore::new(settings.max_concurrent_requests)),
        timeout: settings.request_timeout,
    };
    router
        .layer(axum::middleware::from_fn_with_state(limits, limit))
        .layer(axum::Extension(FormEncodedJson(
            settings.accept_form_encoded_json,
        )))
        .fallback(|| async { ApiError::NotFound("there is no such route".into()) })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not accept that method",
            )
        })
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(guard::sanitize_request_id))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|request: &Request| {
                        let route = request
                            .extensions()
                            .get::<MatchedPath>()
                            .map(MatchedPath::as_str)
                            .unwrap_or("unmatched");
                        let request_id = request
                            .headers()
                            .get(REQUEST_ID_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        let span = tracing::info_span!(
                            "http",
                            method = %request.method(),
                            route,
                            request_id,
                            trace_id = tracing::field::Empty,
                            // Recorded by crate::auth once the bearer token is verified.
                            caller = tracing::field::Empty,
                        );
                        // A caller's W3C trace context makes this request part of its trace.
                        let traceparent = request
                            .headers()
                            .get(crate::infra::telemetry::TRACEPARENT)
                            .and_then(|v| v.to_str().ok());
                        crate::infra::telemetry::continue_trace(&span, traceparent);
                        span
                    }),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(axum::middleware::from_fn_with_state(
                    metrics,
                    crate::infra::metrics::record_http,
                ))
                .layer(CatchPanicLayer::custom(|_panic| panic_response()))
                .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
                .layer(axum::middleware::from_fn_with_state(
                    guard::Hosts::new(&settings.allowed_hosts),
                    guard::guard,
                )),
        )
}

#[derive(Clone)]
struct Limits {
    permits: Arc<Semaphore>,
    timeout: Duration,
}

/// Refuses a request over the concurrency limit at once, and abandons one that runs past the
/// timeout. Abandoning drops the handler: an open transaction rolls back, but a statement
/// already sent runs on in PostgreSQL (bounded by `database.statement_timeout`, which is
/// shorter, so that normally the database gives up first and the answer is an ordinary 503).
async fn limit(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let Ok(_permit) = limits.permits.try_acquire_owned() else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Overloaded",
            "the service is serving as many requests as it takes at once; retry in a moment",
        )
        .retry_after(Duration::from_secs(1));
    };
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout = ?limits.timeout, "request timed out");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Timed out",
                format!(
                    "the request took longer than {:?} and was abandoned; a change it had \
                     already sent to the database may still complete, so look before repeating it",
                    limits.timeout
                ),
            )
            .into_response()
        }
    }
}

fn panic_response() -> Response {
    tracing::error!("a request handler panicked");
    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}

/// Connections accepted by the kernel and waiting for the service to take them: at
/// `http.max_connections` the service stops taking them, and a burst queues here rather than
/// being refused (Linux caps it at `net.core.somaxconn`, 4096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `host:port` (0 picks a free port) for [`serve`].
pub async fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let address = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{host} has no address")))?;
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As TcpListener::bind does: a restarted service can bind at once.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How the server loop treats connections (`http.*` settings).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; at the limit no more are accepted until one closes (they wait
    /// in the kernel's queue), so that idle sockets cannot exhaust file descriptors.
    pub max_connections: usize,
    /// A connection must deliver a whole request head within this time of being accepted (or
    /// of its previous answer), or it is closed.
    pub header_read_timeout: Duration,
}

/// Serves until `shutdown` is cancelled, then lets in-flight requests finish (up to `grace`).
///
/// A loop of our own rather than `axum::serve`, for two limits. A client that connects and then
/// sends nothing, or never finishes its request head (slowloris), is cut off after
/// `header_read_timeout`: the timer starts when the connection is accepted, before its first
/// byte, and again after every answer on a kept-alive connection. And at most
/// `max_connections` are open at once.
///
/// HTTP/1.1 only. Serving HTTP/2 as well means first sniffing which protocol a connection
/// speaks, and that wait has no timer in hyper (a client that sends nothing, or only the HTTP/2
/// preface, was held for ever); HTTP/2 would also need limits of its own (streams, resets,
/// keep-alive pings). A browser or proxy in front speaks HTTP/2 to the world and HTTP/1.1 to the
/// services; a client that opens with the HTTP/2 preface is answered with an error and closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = GracefulShutdown::new();
    loop {
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, most likely: let some connections close.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = connections.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("in-flight requests did not finish in time; closing");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PatientId;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        id: PatientId,
        name: String,
    }

    fn problem_of(result: Result<Body, ApiError>) -> Problem {
        match result {
            Ok(body) => panic!("expected an error, got {body:?}"),
            Err(error) => error.to_problem(),
        }
    }

    #[test]
    fn syntax_errors_are_400() {
        let problem = problem_of(parse_json(br#"{"id": 1,"#));
        assert_eq!(problem.status, 400);
        let problem = problem_of(parse_json(b""));
        assert_eq!(problem.status, 400);
        let problem = problem_of(parse_json(br#"{"id":1,"name":"a"} trailing"#));
        assert_eq!(problem.status, 400);
    }

    #[test]
    fn invalid_and_missing_fields_are_422_and_named() {
        let problem = problem_of(parse_json(br#"{"id": -5, "name": "a"}"#));
        assert_eq!(
            (problem.status, problem.field.as_deref()),
            (422, Some("id"))
        );
        let problem = problem_of(parse_json(br#"{"id": 5}"#));
        assert_eq!(
            (problem.status, problem.field.as_deref()),
            (422, Some("name"))
        );
        assert!(problem.detail.contains("name"), "{}", problem.detail);
    }
}
