use std::collections::HashSet;

use futures::future::join_all;
use serde_json::Value;

use crate::helpers::{TestApp, patient};
use opd_shared::testing::expect_problem;

#[tokio::test]
async fn two_hundred_concurrent_registrations_get_two_hundred_distinct_tokens() {
    let app = TestApp::spawn().await;
    let responses = join_all((1..=200).map(|id| {
        let app = &app;
        async move {
            let response = app.register(&patient(id)).await;
            assert_eq!(response.status(), 201);
            response.json::<Value>().await.unwrap()["token"]
                .as_i64()
                .unwrap()
        }
    }))
    .await;
    let distinct: HashSet<i64> = responses.iter().copied().collect();
    assert_eq!(distinct.len(), 200);
    // No gaps either: every number from 1 to 200 was handed out once.
    assert_eq!(distinct, (1..=200).collect());
}

#[tokio::test]
async fn tokens_survive_a_restart_of_the_service() {
    let mut app = TestApp::spawn().await;
    assert_eq!(app.register(&patient(1)).await.status(), 201);
    app.restart().await;
    let token = app.get_json("/opd/patient/token/1").await;
    assert_eq!(token["token"], 2);
}

#[tokio::test]
async fn a_token_is_only_issued_to_a_registered_patient() {
    let app = TestApp::spawn().await;
    let response = app.get("/opd/patient/token/300").await;
    let problem = expect_problem(response, 404).await;
    assert!(problem["detail"].as_str().unwrap().contains("300"));
    // No token was consumed and nothing was published.
    assert_eq!(app.count("select count(*) from outbox").await, 0);
    assert_eq!(app.count("select count(*) from token_counters").await, 0);
    assert_eq!(
        app.register(&patient(300))
            .await
            .json::<Value>()
            .await
            .unwrap()["token"],
        1
    );
}

#[tokio::test]
async fn reset_continues_the_sequence_and_never_goes_back() {
    let app = TestApp::spawn().await;
    let reset = |n: &str| {
        app.http
            .get(app.url(&format!("/opd/patient/token/reset/{n}")))
            .send()
    };

    let response = reset("10").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        "Token reset successful"
    );
    assert_eq!(
        app.register(&patient(1))
            .await
            .json::<Value>()
            .await
            .unwrap()["token"],
        11
    );

    expect_problem(reset("5").await.unwrap(), 409).await;
    expect_problem(reset("abc").await.unwrap(), 400).await;
    assert_eq!(
        app.register(&patient(2))
            .await
            .json::<Value>()
            .await
            .unwrap()["token"],
        12
    );
}
