//! API tests of the registration service: the real service on a real PostgreSQL database and a
//! real NATS server of its own (three clustered nodes where clustering is tested), plus
//! in-process tests of request validation.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step must fail the test"
)]
mod access;
mod browsers;
mod errors;
mod group_commit;
mod helpers;
mod idempotency;
mod metrics;
mod outbox;
mod patients;
mod secrets;
mod tokens;
mod validation;
