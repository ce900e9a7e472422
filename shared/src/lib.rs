//! Common machinery of the OPD services.
//!
//! Every service is the same shape: an axum API over its own PostgreSQL database, a
//! transactional outbox relayed to JetStream, and durable JetStream consumers whose effects are
//! idempotent. The pieces that make that shape live here once, so that a service crate holds only
//! its routes, its tables and its event handlers.
//!
//! - [`service`]: what a service declares about itself ([`service::Service`]) and what its
//!   handlers get ([`service::AppState`]);
//! - [`app`]: the one router built from that declaration, and the running service
//!   ([`app::Application`], [`app::run`]);
//! - [`auth`]: who may call what: bearer tokens and the roles each operation declares;
//! - [`http`]: the HTTP side: serving, extractors, errors, idempotency, pages, OpenAPI, health;
//! - [`events`]: the event contracts, the outbox and its relay, the consumers, dead letters;
//! - [`micro`]: the NATS Services API registration and the request/reply answers ("where is
//!   this patient?");
//! - [`control`]: the control plane: pause and resume a consumer, maintenance, the log filter,
//!   commanded over NATS;
//! - [`infra`]: configuration, connections (database, NATS), telemetry and metrics;
//! - [`domain`]: the types requests and events are made of.
//!
//! Modules depend downwards only: `app` on everything, `auth` on `http`'s problems and `infra`, `service` on `events` and `infra`,
//! `events` and `http` on `infra` and `domain`.

pub mod app;
pub mod auth;
pub mod control;
pub mod domain;
pub mod events;
pub mod http;
pub mod infra;
pub mod micro;
pub mod service;

#[cfg(test)]
mod layering;
