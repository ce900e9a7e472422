use opd_shared::testing::{self, NatsCluster, RunningService, TestDatabase};
use registration::SERVICE;
use serde_json::{Value, json};

pub struct TestApp {
    pub service: RunningService,
    pub database: TestDatabase,
    pub nats: NatsCluster,
    pub prefix: String,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn spawn() -> Self {
        let nats = NatsCluster::start().await;
        let database = TestDatabase::create("registration").await;
        let prefix = format!("{}.", testing::unique_name("t"));
        let service = testing::spawn(
            registration::startup::build,
            testing::settings(SERVICE.defaults, &database, &nats, &prefix),
        )
        .await;
        Self {
            service,
            database,
            nats,
            prefix,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.service.url(path)
    }

    pub async fn register(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/opd/patient/register"))
            .json(body)
            .send()
            .await
            .expect("request failed")
    }

    /// The `patient.register` events on the stream, as (headers, payload).
    pub async fn register_events(&self) -> Vec<(async_nats::HeaderMap, Value)> {
        testing::stream_messages(
            &self.nats.urls(),
            "PATIENT",
            &format!("{}patient.register", self.prefix),
        )
        .await
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
