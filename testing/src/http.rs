//! HTTP helpers: problem details, the book's curl style, and requests answered in-process.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;

use opd_shared::http::health::Consumers;
use opd_shared::infra::Infra;
use opd_shared::infra::config::Settings;
use opd_shared::infra::metrics::Metrics;
use opd_shared::service::Service;
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Notify;
use tower::ServiceExt;

/// Sends `body` as the book's curl commands do: `-d` without a content type, which curl sends
/// as `application/x-www-form-urlencoded`.
pub fn curl_style(request: reqwest::RequestBuilder, body: &str) -> reqwest::RequestBuilder {
    request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
}

/// Asserts that `response` is a problem details document with `status`, and returns it.
pub async fn expect_problem(response: reqwest::Response, status: u16) -> Value {
    let content_type = content_type(response.headers());
    let actual = response.status().as_u16();
    let body = response.text().await.expect("no response body");
    check_problem(actual, &content_type, &body, status)
}

fn content_type(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn check_problem(actual: u16, content_type: &str, body: &str, status: u16) -> Value {
    assert_eq!(actual, status, "unexpected status; body: {body}");
    assert_eq!(
        content_type,
        opd_shared::http::problem::CONTENT_TYPE,
        "{body}"
    );
    let problem: Value = serde_json::from_str(body).expect("problem body is not JSON");
    assert_eq!(problem["status"], status, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{problem}"
    );
    problem
}

/// An answer of the in-process API.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub www_authenticate: Option<String>,
    pub body: String,
}

impl Answer {
    /// Asserts a problem details document with `status`, and returns it.
    pub fn problem(&self, status: u16) -> Value {
        check_problem(self.status.as_u16(), &self.content_type, &self.body, status)
    }
}

/// Answers `method path` with `body` (sent as JSON) in-process (no socket, no database, no NATS): the router
/// production serves ([`opd_shared::app::app`]), over a pool and a NATS client that never
/// connect. For request validation, which is decided before a handler touches the database.
pub async fn oneshot(service: &'static Service, method: &str, path: &str, body: &str) -> Answer {
    oneshot_as(service, Some(&crate::auth::all_roles()), method, path, body).await
}

/// [`oneshot`] with `token` as the bearer token, or none.
pub async fn oneshot_as(
    service: &'static Service,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> Answer {
    // The extras' tasks are not started, as in `without_background_tasks`.
    let (router, _tasks) = opd_shared::app::app(
        service,
        &offline_infra(service).await,
        tokio_util::sync::CancellationToken::new(),
    )
    .expect("the service's extras");
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Body::from(body.to_owned()))
        .expect("a valid request");
    let response = router.oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type = content_type(response.headers());
    let www_authenticate = response
        .headers()
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a readable body")
        .to_bytes();
    Answer {
        status,
        content_type,
        www_authenticate,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A service's connections, none of them live: nothing listens on port 1, so a handler that
/// reaches the database fails at once, and the NATS client keeps trying in the background.
async fn offline_infra(service: &'static Service) -> Infra {
    let mut settings = Settings::defaults(service.defaults());
    settings.database.url = "postgres://nobody:nothing@127.0.0.1:1/none".into();
    crate::auth::trust_test_issuer(&mut settings);
    let authenticator =
        opd_shared::infra::authenticator(&settings).expect("the test issuer's keys");
    let pool = PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(200))
        .connect_lazy(&settings.database.url)
        .expect("a lazy pool needs no server");
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect("nats://127.0.0.1:1")
        .await
        .expect("a client that connects in the background needs no server");
    Infra {
        settings,
        relay_pool: pool.clone(),
        pool,
        jetstream: async_nats::jetstream::new(nats.clone()),
        nats,
        outbox_written: Arc::new(Notify::new()),
        consumers: Consumers::default(),
        metrics: Arc::new(Metrics::new()),
        authenticator: Arc::new(authenticator),
        control: Default::default(),
    }
}
