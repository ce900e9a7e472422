//! The inspection service: the queue of registered patients and their inspections (port 9091).

pub mod events;
pub mod routes;
pub mod startup;
pub mod whereabouts;

pub use startup::{REGISTRATIONS_CONSUMER, SERVICE};
