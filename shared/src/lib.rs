//! Common machinery of the OPD services.
//!
//! Every service is the same shape: an axum API over its own PostgreSQL database, a
//! transactional outbox relayed to JetStream, and durable JetStream consumers whose effects are
//! idempotent. The pieces that make that shape live here once, so that a service crate holds only
//! its routes, its tables and its event handlers.

pub mod config;
pub mod consumer;
pub mod db;
pub mod dead_letters;
pub mod domain;
pub mod error;
pub mod events;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod metrics;
pub mod nats;
pub mod openapi;
pub mod outbox;
pub mod page;
pub mod problem;
pub mod retry;
pub mod secret_file;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod waiting_list;
