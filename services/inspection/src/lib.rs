//! The inspection service: the queue of registered patients and their inspections (port 9091).

pub mod events;
pub mod routes;
pub mod startup;

use opd_shared::config::ServiceDefaults;
use opd_shared::service::ServiceInfo;

pub const SERVICE: ServiceInfo = ServiceInfo {
    defaults: ServiceDefaults {
        name: "inspection",
        port: 9091,
    },
    title: "Inspection Service",
    version: env!("CARGO_PKG_VERSION"),
    source: "/opd/inspection",
};
