//! The registration service: registers patients and hands out queue tokens (port 9090).

pub mod domain;
pub mod registrar;
pub mod routes;
pub mod startup;
pub mod token_counter;
pub mod whereabouts;

pub use startup::SERVICE;
