use serde_json::json;

use crate::helpers::TestApp;
use opd_shared::testing::{curl_style, expect_problem};

#[tokio::test]
async fn recording_for_an_unknown_patient_is_404_and_for_one_not_waiting_409() {
    let app = TestApp::spawn().await;
    let record = |id: i64| {
        app.http
            .post(app.url("/opd/inspection/record"))
            .json(&json!({"id": id, "time": "2021/07/12 10:21 AM"}))
            .send()
    };
    expect_problem(record(999).await.unwrap(), 404).await;

    app.registered(200, 1).await;
    app.pending_count(1).await;
    assert_eq!(record(200).await.unwrap().status(), 201);
    let problem = expect_problem(record(200).await.unwrap(), 409).await;
    assert!(problem["detail"].as_str().unwrap().contains("not waiting"));
    // Neither failure wrote an inspection or an event.
    assert_eq!(app.count("select count(*) from inspections").await, 1);
    assert_eq!(app.count("select count(*) from outbox").await, 1);

    let response = app.get("/opd/inspection/history/999").await;
    expect_problem(response, 404).await;
}

#[tokio::test]
async fn bad_input_is_400_or_422_with_the_field_named() {
    let app = TestApp::spawn().await;
    let response = curl_style(app.http.post(app.url("/opd/inspection/record")), "{\"id\":")
        .send()
        .await
        .unwrap();
    expect_problem(response, 400).await;

    for (body, field) in [
        (json!({"time": "10:21"}), "id"),
        (json!({"id": 200}), "time"),
        (json!({"id": 0, "time": "10:21"}), "id"),
        (json!({"id": 200, "time": "10:21", "notes": 5}), "notes"),
    ] {
        let response = app
            .http
            .post(app.url("/opd/inspection/record"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 422).await;
        assert_eq!(problem["field"], field, "{body}");
    }
    let response = app.get("/opd/inspection/history/-1").await;
    expect_problem(response, 400).await;
}
