//! The whole platform in one test process: every service with its own database, all of them on
//! one three-node NATS cluster, and HTTP helpers for the book's walkthrough.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test support: a failed step must fail the test"
)]

use opd_shared::config::{ServiceDefaults, Settings};
use opd_shared::testing::{self, NatsCluster, RunningService, TestDatabase};
use serde_json::Value;

/// Which service, and how to build it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Registration,
    Inspection,
    Treatment,
    Release,
}

/// All four, in the order a patient meets them.
pub const ALL: [Service; 4] = [
    Service::Registration,
    Service::Inspection,
    Service::Treatment,
    Service::Release,
];

impl Service {
    fn defaults(self) -> ServiceDefaults {
        match self {
            Self::Registration => registration::SERVICE.defaults,
            Self::Inspection => inspection::SERVICE.defaults,
            Self::Treatment => treatment::SERVICE.defaults,
            Self::Release => release::SERVICE.defaults,
        }
    }

    async fn start(self, settings: Settings) -> RunningService {
        match self {
            Self::Registration => testing::spawn(registration::startup::build, settings).await,
            Self::Inspection => testing::spawn(inspection::startup::build, settings).await,
            Self::Treatment => testing::spawn(treatment::startup::build, settings).await,
            Self::Release => testing::spawn(release::startup::build, settings).await,
        }
    }
}

struct Slot {
    service: Service,
    settings: Settings,
    running: Option<RunningService>,
}

pub struct Platform {
    pub nats: NatsCluster,
    slots: Vec<Slot>,
}

impl Platform {
    pub async fn start(services: &[Service]) -> Self {
        let nats = NatsCluster::start().await;
        let prefix = format!("{}.", testing::unique_name("t"));
        let mut slots = Vec::new();
        for &service in services {
            let database = TestDatabase::create(service.defaults().name).await;
            let settings = testing::settings(service.defaults(), &database, &nats, &prefix);
            let running = service.start(settings.clone()).await;
            slots.push(Slot {
                service,
                settings,
                running: Some(running),
            });
        }
        Self { nats, slots }
    }

    fn slot(&self, service: Service) -> &Slot {
        self.slots
            .iter()
            .find(|slot| slot.service == service)
            .expect("service not part of this platform")
    }

    fn slot_mut(&mut self, service: Service) -> &mut Slot {
        self.slots
            .iter_mut()
            .find(|slot| slot.service == service)
            .expect("service not part of this platform")
    }

    /// The running instance of `service`, with its HTTP helpers (`get_json`, `post`, …).
    pub fn running(&self, service: Service) -> &RunningService {
        self.slot(service)
            .running
            .as_ref()
            .expect("service is stopped")
    }

    pub fn url(&self, service: Service, path: &str) -> String {
        self.running(service).url(path)
    }

    /// Stops a service as SIGTERM would.
    pub async fn stop(&mut self, service: Service) {
        if let Some(running) = self.slot_mut(service).running.take() {
            running.stop().await;
        }
    }

    /// Starts a stopped service again, on its database (on a new port).
    pub async fn restart(&mut self, service: Service) {
        self.stop(service).await;
        let slot = self.slot_mut(service);
        slot.running = Some(service.start(slot.settings.clone()).await);
    }

    pub async fn get(&self, service: Service, path: &str) -> Value {
        self.running(service).get_json(path).await
    }

    pub async fn post(&self, service: Service, path: &str, body: &Value) -> reqwest::Response {
        self.running(service).post(path, body).await
    }

    /// Waits until `GET path` answers with a list that satisfies `done`, and returns it.
    pub async fn list_until(
        &self,
        service: Service,
        path: &str,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        self.running(service).list_until(path, what, done).await
    }

    /// Messages of `subject` (without prefix) on the stream.
    pub async fn events(&self, subject: &str) -> Vec<Value> {
        let any = self.slots.first().expect("a platform has services");
        testing::events(&any.settings.nats, subject)
            .await
            .into_iter()
            .map(|(_, payload)| payload)
            .collect()
    }
}
