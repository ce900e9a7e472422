use opd_shared::domain::PatientId;
use opd_shared::events::{EventMeta, PatientRegistered};
use opd_testing::{TestApp, TestAppBuilder};
use serde_json::{Value, json};

pub const PENDING: &str = "/opd/inspection/pending";
pub const RECORD: &str = "/opd/inspection/record";

/// The inspection service under test, consuming on its own.
pub async fn spawn_app() -> TestApp {
    TestApp::spawn(&inspection::SERVICE).await
}

pub fn builder() -> TestAppBuilder {
    TestApp::builder(&inspection::SERVICE)
}

pub fn registration(id: i64, token: i64) -> PatientRegistered {
    PatientRegistered {
        id: PatientId::try_from(id).unwrap(),
        token,
        site: opd_shared::domain::Site::hospital(),
    }
}

/// Announces a registration as the registration service would.
pub async fn registered(app: &TestApp, id: i64, token: i64) -> EventMeta {
    app.publish(&registration(id, token)).await
}

/// Waits until the pending list has `count` entries, and returns it.
pub async fn pending_count(app: &TestApp, count: usize) -> Vec<Value> {
    app.list_until(PENDING, &format!("{count} patients pending"), |list| {
        list.len() == count
    })
    .await
}

/// The book's inspection of patient `id`.
pub fn inspection(id: i64) -> Value {
    json!({"id": id, "time": "2021/07/12 10:21 AM", "observations": "ABC Syncrome",
           "medication": "XYZ x 3", "tests": "FBT, UC", "notes": "possible Covid-19"})
}
