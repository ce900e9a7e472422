use std::time::Duration;

use inspection::SERVICE;
use opd_shared::config::Settings;
use opd_shared::domain::PatientId;
use opd_shared::events::{EventMeta, PatientRegistered};
use opd_shared::testing::{self, NatsCluster, RunningService, TestDatabase, eventually};
use serde_json::Value;

pub struct TestApp {
    pub service: RunningService,
    pub database: TestDatabase,
    // Held so that the cluster lives as long as the test.
    pub _nats: NatsCluster,
    pub settings: Settings,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn spawn() -> Self {
        let nats = NatsCluster::start().await;
        let database = TestDatabase::create("inspection").await;
        let prefix = format!("{}.", testing::unique_name("t"));
        let settings = testing::settings(SERVICE.defaults, &database, &nats, &prefix);
        let service = testing::spawn(inspection::startup::build, settings.clone()).await;
        Self {
            service,
            database,
            _nats: nats,
            settings,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.service.url(path)
    }

    /// Announces a registration as the registration service would.
    pub async fn registered(&self, id: i64, token: i64) -> EventMeta {
        let event = PatientRegistered {
            id: PatientId::try_from(id).unwrap(),
            token,
        };
        testing::publish_event(&self.settings.nats, &event).await
    }

    pub async fn pending(&self) -> Vec<Value> {
        self.http
            .get(self.url("/opd/inspection/pending"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the pending list has `count` entries, and returns it.
    pub async fn pending_count(&self, count: usize) -> Vec<Value> {
        eventually(
            Duration::from_secs(20),
            &format!("{count} patients pending"),
            || async {
                let pending = self.pending().await;
                (pending.len() == count).then_some(pending)
            },
        )
        .await
    }

    pub async fn treatment_events(&self) -> Vec<(async_nats::HeaderMap, Value)> {
        testing::stream_messages(
            &self.settings.nats.servers,
            &self.settings.nats.stream,
            &format!("{}patient.treatment", self.settings.nats.subject_prefix),
        )
        .await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.service.pool)
            .await
            .unwrap()
    }
}
