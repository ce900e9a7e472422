//! API tests of the registration service: the real service, a real PostgreSQL database and a
//! real three-node NATS cluster per test.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step must fail the test"
)]
mod errors;
mod helpers;
mod outbox;
mod patients;
mod tokens;
