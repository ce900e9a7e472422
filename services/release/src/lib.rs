//! The release service: patients to be released, and their discharge or admission (port 9093).

pub mod events;
pub mod routes;
pub mod startup;
pub mod whereabouts;

pub use startup::{RELEASE_CONSUMER, SERVICE};
