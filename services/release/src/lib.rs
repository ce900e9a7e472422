//! The release service: patients to be released, and their discharge or admission (port 9093).

pub mod events;
pub mod routes;
pub mod startup;

use opd_shared::config::ServiceDefaults;
use opd_shared::service::ServiceInfo;

pub const SERVICE: ServiceInfo = ServiceInfo {
    defaults: ServiceDefaults {
        name: "release",
        port: 9093,
    },
    title: "Release Service",
    version: env!("CARGO_PKG_VERSION"),
    source: "/opd/release",
};
