//! API tests of the treatment service: real PostgreSQL, a real three-node NATS cluster.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step must fail the test"
)]

use opd_shared::domain::{Note, PatientId};
use opd_shared::events::PatientSentForTreatment;
use opd_shared::testing::{ServiceUnderTest, curl_style, expect_problem};
use serde_json::{Value, json};
use treatment::SERVICE;

async fn spawn() -> ServiceUnderTest {
    ServiceUnderTest::start(SERVICE.defaults, treatment::startup::build).await
}

/// Inspection sends patient `id` for treatment; waits until it is pending.
async fn sent_for_treatment(app: &ServiceUnderTest, id: i64) {
    let event = PatientSentForTreatment {
        id: PatientId::try_from(id).unwrap(),
        medication: Note::from_stored(Some("XYZ x 3".into())),
        tests: Note::default(),
        notes: Note::default(),
    };
    app.publish(&event).await;
    app.list_until(
        "/opd/treatment/pending",
        "the patient to be pending",
        |list| list.iter().any(|entry| entry["id"] == id),
    )
    .await;
}

#[tokio::test]
async fn medication_keeps_the_dose_and_takes_the_patient_off_the_list() {
    let app = spawn().await;
    sent_for_treatment(&app, 200).await;
    sent_for_treatment(&app, 300).await;

    // The book's curl command, as printed (form content type, `dose` included).
    let response = curl_style(
        app.http.post(app.url("/opd/treatment/medication")),
        r#"{"id":200,"time":"2021 07 12 4:35 PM","dose":"xyz x 1, abc x 2","notes":"low fever"}"#,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let pending: Value = app
        .get("/opd/treatment/pending")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending, json!([{"id": 300, "medication": "XYZ x 3"}]));
    let history: Value = app
        .get("/opd/treatment/history/200")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        history,
        json!([{"id": 200, "time": "2021 07 12 4:35 PM", "dose": "xyz x 1, abc x 2", "notes": "low fever"}])
    );
}

#[tokio::test]
async fn release_requests_are_published_as_patient_release() {
    let app = spawn().await;
    sent_for_treatment(&app, 200).await;
    let release = json!({"id": 200, "time": "2021 07 12 8:35 PM", "next_state": "discharge",
                         "post_medication": "NM x 10 days"});
    assert_eq!(
        app.post("/opd/treatment/release", &release).await.status(),
        201
    );
    let events = app.events_until("patient.release", 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, release);
    assert_eq!(
        events[0].0.get("ce-source").map(|v| v.as_str()),
        Some("/opd/treatment")
    );
}

#[tokio::test]
async fn every_endpoint_rejects_bad_input_and_unknown_patients_with_problems() {
    let app = spawn().await;
    sent_for_treatment(&app, 200).await;

    let valid = [
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
    ];
    for (path, body) in &valid {
        // Malformed JSON.
        let response = curl_style(app.http.post(app.url(path)), r#"{"id":200,"#)
            .send()
            .await
            .unwrap();
        expect_problem(response, 400).await;
        // Each required field missing in turn.
        for field in body.as_object().unwrap().keys() {
            let mut partial = body.clone();
            partial.as_object_mut().unwrap().remove(field);
            let problem = expect_problem(app.post(path, &partial).await, 422).await;
            assert_eq!(problem["field"], field.as_str(), "{path} without {field}");
        }
        // A patient inspection never sent here.
        let mut unknown = body.clone();
        unknown["id"] = json!(999);
        let problem = expect_problem(app.post(path, &unknown).await, 404).await;
        assert!(problem["detail"].as_str().unwrap().contains("999"));
    }
    let problem = expect_problem(
        app.post(
            "/opd/treatment/release",
            &json!({"id": 200, "time": "t", "next_state": "home"}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(problem["field"], "next_state");
    for path in ["/opd/treatment/history/999", "/opd/treatment/tests/999"] {
        expect_problem(app.get(path).await, 404).await;
    }
    expect_problem(app.get("/opd/treatment/tests/abc").await, 400).await;

    // None of the rejected requests left a trace.
    for table in ["medications", "test_records", "release_requests", "outbox"] {
        let rows: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(rows, 0, "{table}");
    }
    // And the valid ones still work.
    for (path, body) in &valid {
        assert_eq!(app.post(path, body).await.status(), 201, "{path}");
    }
    let tests: Value = app
        .get("/opd/treatment/tests/200")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tests, json!([{"id": 200, "time": "t", "test_name": "FBC"}]));
}
