//! The treatment service: patients sent for treatment, their medication and tests, and release
//! requests (port 9092).

pub mod events;
pub mod routes;
pub mod startup;

use opd_shared::config::ServiceDefaults;
use opd_shared::service::ServiceInfo;

pub const SERVICE: ServiceInfo = ServiceInfo {
    defaults: ServiceDefaults {
        name: "treatment",
        port: 9092,
    },
    title: "Treatment Service",
    version: env!("CARGO_PKG_VERSION"),
    source: "/opd/treatment",
};
