//! The whole platform in one test process: several services, each with its own database, all on
//! one NATS server, for end-to-end tests.

use std::sync::Arc;
use std::time::Duration;

use opd_shared::service::Service;
use serde_json::Value;

use crate::{NatsServer, TestApp};

/// Every consumer of a platform redelivers what it did not acknowledge after this long, instead
/// of 30 s: a test that waits a little longer than this for "nothing more arrives" has seen
/// every redelivery there could be.
pub const ACK_WAIT: Duration = Duration::from_secs(3);

pub struct Platform {
    pub nats: Arc<NatsServer>,
    apps: Vec<TestApp>,
}

impl Platform {
    /// `services` on one NATS node.
    pub async fn start(services: &[&'static Service]) -> Self {
        Self::start_on(Arc::new(NatsServer::single().await), services).await
    }

    /// `services` on a three-node cluster, for journeys that lose a node.
    pub async fn start_clustered(services: &[&'static Service]) -> Self {
        Self::start_on(Arc::new(NatsServer::cluster().await), services).await
    }

    async fn start_on(nats: Arc<NatsServer>, services: &[&'static Service]) -> Self {
        let mut apps = Vec::new();
        for service in services {
            let app = TestApp::builder(service)
                .nats(nats.clone())
                .ack_wait(ACK_WAIT)
                .spawn()
                .await;
            apps.push(app);
        }
        Self { nats, apps }
    }

    /// The service under test `service`, with its client and helpers.
    pub fn app(&self, service: &Service) -> &TestApp {
        self.apps
            .iter()
            .find(|app| app.service.name == service.name)
            .unwrap_or_else(|| panic!("{} is not part of this platform", service.name))
    }

    pub fn app_mut(&mut self, service: &Service) -> &mut TestApp {
        self.apps
            .iter_mut()
            .find(|app| app.service.name == service.name)
            .unwrap_or_else(|| panic!("{} is not part of this platform", service.name))
    }

    /// The payloads of `subject` on the stream.
    pub async fn events(&self, subject: &str) -> Vec<Value> {
        let any = self.apps.first().expect("a platform has services");
        any.events(subject)
            .await
            .into_iter()
            .map(|(_, payload)| payload)
            .collect()
    }
}
