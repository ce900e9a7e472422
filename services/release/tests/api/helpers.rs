use opd_shared::domain::{Disposition, Note, PatientId, Text};
use opd_shared::events::PatientReleaseRequested;
use opd_testing::{TestApp, TestAppBuilder};

pub const PENDING: &str = "/opd/release/pending";
pub const DISCHARGE: &str = "/opd/release/discharge";

/// The release service under test, consuming on its own.
pub async fn spawn_app() -> TestApp {
    TestApp::spawn(&release::SERVICE).await
}

pub fn builder() -> TestAppBuilder {
    TestApp::builder(&release::SERVICE)
}

/// What treatment sends to release patient `id` to `next_state`.
pub fn release_request(id: i64, next_state: Disposition) -> PatientReleaseRequested {
    PatientReleaseRequested {
        id: PatientId::try_from(id).unwrap(),
        time: Text::try_from("2021 07 12 8:35 PM".to_owned()).unwrap(),
        next_state,
        post_medication: Note::try_from(Some("NM x 10 days".to_owned())).unwrap(),
        notes: Note::default(),
    }
}

/// Treatment asks for patient `id` to be released; waits until it is pending.
pub async fn release_requested(app: &TestApp, id: i64, next_state: Disposition) {
    app.publish(&release_request(id, next_state)).await;
    app.list_until(PENDING, "the patient to be pending", |list| {
        list.iter().any(|entry| entry["id"] == id)
    })
    .await;
}
