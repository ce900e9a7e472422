//! API tests of the release service: real PostgreSQL, a real three-node NATS cluster.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step must fail the test"
)]

use opd_shared::domain::{Note, PatientId};
use opd_shared::events::PatientReleaseRequested;
use opd_shared::testing::{ServiceUnderTest, curl_style, expect_problem};
use release::SERVICE;
use serde_json::{Value, json};

async fn spawn() -> ServiceUnderTest {
    ServiceUnderTest::start(SERVICE.defaults, release::startup::build).await
}

/// Treatment asks for patient `id` to be released; waits until it is pending.
async fn release_requested(app: &ServiceUnderTest, id: i64, next_state: &str) {
    let event = PatientReleaseRequested {
        id: PatientId::try_from(id).unwrap(),
        time: "2021 07 12 8:35 PM".into(),
        next_state: Note::from_stored(Some(next_state.into())),
        post_medication: Note::from_stored(Some("NM x 10 days".into())),
        notes: Note::default(),
    };
    app.publish(&event).await;
    app.list_until(
        "/opd/release/pending",
        "the patient to be pending",
        |list| list.iter().any(|entry| entry["id"] == id),
    )
    .await;
}

async fn discharge(app: &ServiceUnderTest, body: &Value) -> reqwest::Response {
    app.post("/opd/release/discharge", body).await
}

#[tokio::test]
async fn a_discharge_keeps_the_state_and_an_admission_is_announced() {
    let app = spawn().await;
    release_requested(&app, 200, "discharge").await;
    release_requested(&app, 300, "admission").await;
    let pending: Value = app.get_json("/opd/release/pending").await;
    assert_eq!(
        pending,
        json!([
            {"id": 200, "time": "2021 07 12 8:35 PM", "next_state": "discharge", "post_medication": "NM x 10 days"},
            {"id": 300, "time": "2021 07 12 8:35 PM", "next_state": "admission", "post_medication": "NM x 10 days"}
        ])
    );

    // The book's curl command, as printed.
    let response = curl_style(
        app.http.post(app.url("/opd/release/discharge")),
        r#"{"id":200,"time":"2021 07 12 9:35 PM","state":"discharge","post_medication":"NM x 10 days","next_visit":"2021 08 12 09:00AM"}"#,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        "Patient discharge recorded successfully"
    );
    let response = discharge(
        &app,
        &json!({"id": 300, "time": "2021 07 12 9:40 PM", "state": "admission", "notes": "ward 7"}),
    )
    .await;
    assert_eq!(response.status(), 201);

    assert_eq!(
        app.get("/opd/release/pending")
            .await
            .json::<Value>()
            .await
            .unwrap(),
        json!([])
    );
    let states: Vec<(i64, String)> =
        sqlx::query_as("select patient_id, state from discharges order by patient_id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        states,
        vec![(200, "discharge".to_owned()), (300, "admission".to_owned())]
    );
    let admissions = app.events_until("patient.admission", 1).await;
    assert_eq!(admissions.len(), 1, "only the admission is announced");
    assert_eq!(
        admissions[0].1,
        json!({"id": 300, "time": "2021 07 12 9:40 PM", "notes": "ward 7"})
    );
}

#[tokio::test]
async fn discharge_rejects_bad_input_unknown_and_released_patients_with_problems() {
    let app = spawn().await;
    release_requested(&app, 200, "discharge").await;

    let response = curl_style(app.http.post(app.url("/opd/release/discharge")), "[")
        .send()
        .await
        .unwrap();
    expect_problem(response, 400).await;
    let valid = json!({"id": 200, "time": "21:35", "state": "discharge"});
    for field in ["id", "time", "state"] {
        let mut partial = valid.clone();
        partial.as_object_mut().unwrap().remove(field);
        let problem = expect_problem(discharge(&app, &partial).await, 422).await;
        assert_eq!(problem["field"], field);
    }
    let problem = expect_problem(
        discharge(&app, &json!({"id": 200, "time": "21:35", "state": "home"})).await,
        422,
    )
    .await;
    assert_eq!(problem["field"], "state");
    expect_problem(
        discharge(
            &app,
            &json!({"id": 999, "time": "21:35", "state": "discharge"}),
        )
        .await,
        404,
    )
    .await;

    assert_eq!(discharge(&app, &valid).await.status(), 201);
    let problem = expect_problem(discharge(&app, &valid).await, 409).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("already been released")
    );
    let discharges: i64 = sqlx::query_scalar("select count(*) from discharges")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(discharges, 1);
}
