use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::TestApp;
use opd_shared::testing::{curl_style, eventually};

#[tokio::test]
async fn registered_patients_wait_in_token_order_and_leave_when_inspected() {
    let app = TestApp::spawn().await;
    app.registered(300, 2).await;
    app.registered(200, 1).await;
    app.registered(400, 3).await;
    let pending = app.pending_count(3).await;
    assert_eq!(
        pending,
        vec![
            json!({"id": 200, "token": 1}),
            json!({"id": 300, "token": 2}),
            json!({"id": 400, "token": 3})
        ]
    );

    // The book's curl command, as printed.
    let response = curl_style(
        app.http.post(app.url("/opd/inspection/record")),
        r#"{"id":200, "time":"2021/07/12 10:21 AM", "observations":"ABC Syncrome", "medication":"XYZ x 3", "tests":"FBT, UC", "notes":"possible Covid-19"}"#,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let sent =
        json!({"id":200,"medication":"XYZ x 3","tests":"FBT, UC","notes":"possible Covid-19"});
    assert_eq!(response.json::<Value>().await.unwrap(), sent);

    let pending = app.pending().await;
    assert_eq!(
        pending,
        vec![
            json!({"id": 300, "token": 2}),
            json!({"id": 400, "token": 3})
        ]
    );

    let events = eventually(
        Duration::from_secs(30),
        "patient.treatment on the stream",
        || async {
            let events = app.events("patient.treatment").await;
            (!events.is_empty()).then_some(events)
        },
    )
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, sent);
    assert_eq!(
        events[0].0.get("ce-type").map(|v| v.as_str()),
        Some("opd.patient.sent-for-treatment.v1")
    );
}

#[tokio::test]
async fn history_lists_inspections_oldest_first() {
    let app = TestApp::spawn().await;
    app.registered(200, 1).await;
    app.pending_count(1).await;
    let record = |time: &str| {
        app.http
            .post(app.url("/opd/inspection/record"))
            .json(&json!({"id": 200, "time": time, "observations": "ABC Syncrome"}))
            .send()
    };
    assert_eq!(record("2021/07/12 10:21 AM").await.unwrap().status(), 201);
    app.registered(200, 2).await;
    app.pending_count(1).await;
    assert_eq!(record("2021/07/13 09:00 AM").await.unwrap().status(), 201);

    let history: Value = app.get_json("/opd/inspection/history/200").await;
    assert_eq!(
        history,
        json!([
            {"id": 200, "time": "2021/07/12 10:21 AM", "observations": "ABC Syncrome"},
            {"id": 200, "time": "2021/07/13 09:00 AM", "observations": "ABC Syncrome"}
        ])
    );
    let home = app.get("/opd/inspection/").await;
    assert_eq!(home.text().await.unwrap(), "Inspection Service v0.1.0\n");
}
