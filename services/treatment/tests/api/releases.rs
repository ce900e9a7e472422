use opd_testing::expect_problem;
use serde_json::json;

use crate::helpers::{PENDING, sent, sent_for_treatment, spawn_app};

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

#[tokio::test]
async fn a_second_release_request_for_the_same_treatment_is_409_and_publishes_nothing() {
    let app = spawn_app().await;
    sent_for_treatment(&app, 200).await;
    let request = json!({"id": 200, "time": "2021 07 12 8:35 PM", "next_state": "discharge"});
    app.post_expect("/opd/treatment/release", &request, 201)
        .await;
    let problem = expect_problem(app.post("/opd/treatment/release", &request).await, 409).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("already requested")
    );
    assert_eq!(app.count("select count(*) from release_requests").await, 1);
    assert_eq!(app.count("select count(*) from outbox").await, 1);

    // A new inspection sends the patient to treatment again: a new release may follow.
    app.publish(&sent(200)).await;
    app.list_until(PENDING, "the second treatment", |list| {
        list.iter().filter(|entry| entry["id"] == 200).count() == 2
    })
    .await;
    app.post_expect("/opd/treatment/release", &request, 201)
        .await;
    app.assert_handled_once(2).await;
}

#[tokio::test]
async fn the_pending_list_pages_by_its_own_order() {
    let app = spawn_app().await;
    for id in [30, 10, 20] {
        sent_for_treatment(&app, id).await;
    }
    let first = app.get(&format!("{PENDING}?limit=2")).await;
    let link = first.headers()["link"].to_str().unwrap().to_owned();
    let first: Vec<serde_json::Value> = first.json().await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|entry| entry["id"].clone())
            .collect::<Vec<_>>(),
        [30, 10],
        "the order inspection sent them in"
    );
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    let rest = app.get(next).await;
    assert!(rest.headers().get("link").is_none(), "the last page");
    let rest: serde_json::Value = rest.json().await.unwrap();
    assert_eq!(rest, json!([{"id": 20, "medication": "XYZ x 3"}]));
}

#[tokio::test]
async fn the_pending_list_keeps_one_patient_when_asked() {
    let app = spawn_app().await;
    for id in [30, 10, 20] {
        sent_for_treatment(&app, id).await;
    }
    assert_eq!(
        app.get_expect(&format!("{PENDING}?patient=10"), 200).await,
        json!([{"id": 10, "medication": "XYZ x 3"}])
    );
    assert_eq!(
        app.get_expect(&format!("{PENDING}?patient=40"), 200).await,
        json!([])
    );
    let problem = expect_problem(app.get(&format!("{PENDING}?patient=-1")).await, 400).await;
    assert_eq!(problem["type"], "/problems/invalid-query-parameter");
}
