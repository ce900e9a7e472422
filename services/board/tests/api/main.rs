//! The board service against a real NATS server and PostgreSQL: the projection, the JSON, the
//! event stream and its resumption, restarts, replicas.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step must fail the test"
)]

mod helpers;
mod projection;
mod stream;
