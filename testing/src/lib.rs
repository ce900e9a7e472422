//! Test support for the OPD services, used only as a dev-dependency.
//!
//! The services under test check bearer tokens as in production, against a test issuer
//! ([`auth`]); a [`TestApp`]'s client and [`oneshot`] send a token with every role unless a test
//! asks for another.
//!
//! Everything here is real: `nats-server` processes ([`nats`]), PostgreSQL databases
//! ([`database`]), the service itself running in the test process ([`app`]), and the whole
//! platform for end-to-end tests ([`platform`]). Whatever a test starts is stopped and removed
//! when its handle drops.
//!
//! - PostgreSQL: `OPD_TEST_DATABASE_URL` names a superuser connection (scripts/test.sh starts a
//!   throwaway server and sets it); each service under test gets its own role and database.
//! - NATS: `nats-server` from `PATH` (or `NATS_SERVER_BIN`), configured from `nats/node.conf`
//!   (one node) or `nats/cluster.conf` (three nodes), the files scripts/dev.sh and
//!   docker-compose.yml use. A test gets a server of its own, so subjects and the stream need no
//!   per-test names.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test support: a set-up that fails must stop the test loudly"
)]

pub mod app;
pub mod auth;
pub mod database;
pub mod http;
pub mod nats;
pub mod platform;
pub mod site;
pub mod stream;

mod pids;

use std::future::Future;
use std::time::Duration;

pub use app::{TestApp, TestAppBuilder};
pub use database::TestDatabase;
pub use http::{curl_style, expect_problem, oneshot, oneshot_as};
pub use nats::NatsServer;
pub use platform::Platform;
pub use reqwest::Method;
pub use site::{LeafServer, LinkCut};

/// How long a test waits for something asynchronous (an event to arrive, a service to recover)
/// before it fails. Generous: the suite runs on two busy cores.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `check` until it returns `Some`, or panics naming `what` after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(PATIENCE, what, check).await
}

/// [`eventually`] with a timeout of the caller's choice.
pub async fn eventually_within<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Settings under which the book's curl commands work as printed: they send JSON with `-d`,
/// that is as a form (`http.accept_form_encoded_json`). For
/// `TestApp::builder(..).settings(book_curl)`.
pub fn book_curl(settings: &mut opd_shared::infra::config::Settings) {
    settings.http.accept_form_encoded_json = true;
}

/// A short random name, unique enough to separate tests that run side by side.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}
