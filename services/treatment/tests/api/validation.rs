//! Request validation, answered in-process: no socket, no database, no NATS.

use opd_testing::oneshot;
use serde_json::json;
use treatment::SERVICE;

use crate::helpers::valid_requests;

#[tokio::test]
async fn every_endpoint_answers_malformed_json_400_and_each_missing_field_422() {
    for (path, body) in valid_requests() {
        oneshot(&SERVICE, "POST", path, r#"{"id":200,"#)
            .await
            .problem(400);
        for field in body.as_object().unwrap().keys() {
            let mut partial = body.clone();
            partial.as_object_mut().unwrap().remove(field);
            let problem = oneshot(&SERVICE, "POST", path, &partial.to_string())
                .await
                .problem(422);
            assert_eq!(problem["field"], field.as_str(), "{path} without {field}");
        }
    }
    let problem = oneshot(
        &SERVICE,
        "POST",
        "/opd/treatment/release",
        &json!({"id": 200, "time": "t", "next_state": "home"}).to_string(),
    )
    .await
    .problem(422);
    assert_eq!(problem["field"], "next_state");
}

#[tokio::test]
async fn bad_path_parameters_are_400() {
    for path in ["/opd/treatment/tests/abc", "/opd/treatment/history/0"] {
        oneshot(&SERVICE, "GET", path, "").await.problem(400);
    }
}
