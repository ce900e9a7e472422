use std::ops::Deref;

use inspection::SERVICE;
use opd_shared::domain::PatientId;
use opd_shared::events::{EventMeta, PatientRegistered};
use opd_shared::testing::ServiceUnderTest;
use serde_json::Value;

/// The inspection service with its own database and NATS cluster.
pub struct TestApp(ServiceUnderTest);

impl TestApp {
    pub async fn spawn() -> Self {
        Self(ServiceUnderTest::start(SERVICE.defaults, inspection::startup::build).await)
    }

    /// Announces a registration as the registration service would.
    pub async fn registered(&self, id: i64, token: i64) -> EventMeta {
        let event = PatientRegistered {
            id: PatientId::try_from(id).unwrap(),
            token,
        };
        self.publish(&event).await
    }

    pub async fn pending(&self) -> Vec<Value> {
        let pending = self.get_json("/opd/inspection/pending").await;
        pending.as_array().cloned().unwrap_or_default()
    }

    /// Waits until the pending list has `count` entries, and returns it.
    pub async fn pending_count(&self, count: usize) -> Vec<Value> {
        self.list_until(
            "/opd/inspection/pending",
            &format!("{count} patients pending"),
            |list| list.len() == count,
        )
        .await
    }
}

impl Deref for TestApp {
    type Target = ServiceUnderTest;
    fn deref(&self) -> &ServiceUnderTest {
        &self.0
    }
}
