use serde_json::json;

use crate::helpers::{sent_for_treatment, spawn_app};

#[tokio::test]
async fn release_requests_are_published_as_patient_release() {
    let app = spawn_app().await;
    sent_for_treatment(&app, 200).await;
    let release = json!({"id": 200, "time": "2021 07 12 8:35 PM", "next_state": "discharge",
                         "post_medication": "NM x 10 days"});
    assert_eq!(
        app.post_expect("/opd/treatment/release", &release, 201)
            .await,
        "Release event published"
    );
    let events = app.events_until("patient.release", 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, release);
    assert_eq!(
        events[0].0.get("ce-source").map(|v| v.as_str()),
        Some("/opd/treatment")
    );
}
