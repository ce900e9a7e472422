//! The treatment service: patients sent for treatment, their medication and tests, and release
//! requests (port 9092).

pub mod events;
pub mod routes;
pub mod startup;
pub mod whereabouts;

pub use startup::{SERVICE, TREATMENT_CONSUMER};
