use std::ops::Deref;

use opd_shared::config::Settings;
use opd_shared::testing::ServiceUnderTest;
use registration::SERVICE;
use serde_json::{Value, json};

/// The registration service with its own database and NATS cluster.
pub struct TestApp(ServiceUnderTest);

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with settings changed by `adjust`.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> Self {
        Self(
            ServiceUnderTest::start_with(SERVICE.defaults, registration::startup::build, adjust)
                .await,
        )
    }

    /// The stream's current information, once it exists.
    pub async fn stream_info(&self) -> Option<async_nats::jetstream::stream::Info> {
        opd_shared::testing::stream_info(&self.settings.nats).await
    }

    pub async fn register(&self, body: &Value) -> reqwest::Response {
        self.post("/opd/patient/register", body).await
    }

    /// The `patient.register` events on the stream, as (headers, payload).
    pub async fn register_events(&self) -> Vec<(async_nats::HeaderMap, Value)> {
        self.events("patient.register").await
    }

    pub async fn restart(&mut self) {
        self.0.restart(registration::startup::build).await;
    }

    pub fn nats(&mut self) -> &mut opd_shared::testing::NatsCluster {
        &mut self.0.nats
    }
}

impl Deref for TestApp {
    type Target = ServiceUnderTest;
    fn deref(&self) -> &ServiceUnderTest {
        &self.0
    }
}

pub fn patient(id: i64) -> Value {
    json!({
        "id": id,
        "full_name": "chanaka fernando",
        "address": "44, sw19, london",
        "sex": "male",
        "phone": 222222222
    })
}
