//! The registration service: registers patients and hands out queue tokens (port 9090).

pub mod domain;
pub mod routes;
pub mod startup;
pub mod tokens;

use opd_shared::config::ServiceDefaults;
use opd_shared::service::ServiceInfo;

pub const SERVICE: ServiceInfo = ServiceInfo {
    defaults: ServiceDefaults {
        name: "registration",
        port: 9090,
    },
    title: "Registration Service",
    version: env!("CARGO_PKG_VERSION"),
    source: "/opd/registration",
};
