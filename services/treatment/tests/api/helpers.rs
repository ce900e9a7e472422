use opd_shared::domain::{Note, PatientId};
use opd_shared::events::PatientSentForTreatment;
use opd_testing::{TestApp, TestAppBuilder};
use serde_json::{Value, json};

pub const PENDING: &str = "/opd/treatment/pending";

/// The treatment service under test, consuming on its own.
pub async fn spawn_app() -> TestApp {
    TestApp::spawn(&treatment::SERVICE).await
}

pub fn builder() -> TestAppBuilder {
    TestApp::builder(&treatment::SERVICE)
}

/// What inspection sends for patient `id`.
pub fn sent(id: i64) -> PatientSentForTreatment {
    PatientSentForTreatment {
        id: PatientId::try_from(id).unwrap(),
        medication: Note::try_from(Some("XYZ x 3".to_owned())).unwrap(),
        tests: Note::default(),
        notes: Note::default(),
    }
}

/// Inspection sends patient `id` for treatment; waits until it is pending.
pub async fn sent_for_treatment(app: &TestApp, id: i64) {
    app.publish(&sent(id)).await;
    app.list_until(PENDING, "the patient to be pending", |list| {
        list.iter().any(|entry| entry["id"] == id)
    })
    .await;
}

/// A valid request to each endpoint that records something for patient 200.
pub fn valid_requests() -> [(&'static str, Value); 3] {
    [
        (
            "/opd/treatment/medication",
            json!({"id": 200, "time": "t", "dose": "d"}),
        ),
        (
            "/opd/treatment/tests",
            json!({"id": 200, "time": "t", "test_name": "FBC"}),
        ),
        (
            "/opd/treatment/release",
            json!({"id": 200, "time": "t", "next_state": "discharge"}),
        ),
    ]
}
