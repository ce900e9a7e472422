//! API tests of the inspection service: the real service on a real PostgreSQL database and a
//! real NATS server of its own, plus in-process tests of request validation.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step must fail the test"
)]
mod access;
mod consumer;
mod dead_letters;
mod errors;
mod helpers;
mod inspections;
mod metrics;
mod validation;
