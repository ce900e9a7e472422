use opd_testing::expect_problem;
use serde_json::json;

use crate::helpers::{sent_for_treatment, spawn_app, valid_requests};

#[tokio::test]
async fn every_endpoint_answers_404_for_a_patient_never_sent_here_and_leaves_no_trace() {
    let app = spawn_app().await;
    sent_for_treatment(&app, 200).await;

    for (path, body) in valid_requests() {
        let mut unknown = body.clone();
        unknown["id"] = json!(999);
        let problem = expect_problem(app.post(path, &unknown).await, 404).await;
        assert!(problem["detail"].as_str().unwrap().contains("999"));
    }
    for path in ["/opd/treatment/history/999", "/opd/treatment/tests/999"] {
        expect_problem(app.get(path).await, 404).await;
    }
    for table in ["medications", "test_records", "release_requests", "outbox"] {
        assert_eq!(
            app.count(&format!("select count(*) from {table}")).await,
            0,
            "{table}"
        );
    }
    // And the valid ones work.
    for (path, body) in valid_requests() {
        app.post_expect(path, &body, 201).await;
    }
    assert_eq!(
        app.get_expect("/opd/treatment/tests/200", 200).await,
        json!([{"id": 200, "time": "t", "test_name": "FBC"}])
    );
}
