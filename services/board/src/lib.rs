//! The board service: the waiting-room board (port 9094).
//!
//! A stream processor ([`projection`]) folds the patient stream into the `OPD_BOARD`
//! key-value bucket on NATS; every instance watches the bucket ([`view`]) and serves it as a
//! page for a wall screen, server-sent events and JSON ([`routes`]). docs/architecture.md says
//! why the board lives on NATS and not in a database.

pub mod projection;
pub mod routes;
pub mod startup;
pub mod view;

pub use startup::{PROJECTION_CONSUMER, SERVICE};
