//! API and consumer tests of the inspection service: the real service, a real PostgreSQL
//! database and a real three-node NATS cluster per test.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step must fail the test"
)]

mod consumer;
mod errors;
mod helpers;
mod inspections;
