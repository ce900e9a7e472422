//! Request validation, answered in-process: no socket, no database, no NATS.

use inspection::SERVICE;
use opd_testing::oneshot;
use serde_json::json;

use crate::helpers::RECORD;

#[tokio::test]
async fn malformed_json_is_400_and_bad_fields_are_422_and_named() {
    oneshot(&SERVICE, "POST", RECORD, "{\"id\":")
        .await
        .problem(400);
    for (body, field) in [
        (json!({"time": "10:21"}), "id"),
        (json!({"id": 200}), "time"),
        (json!({"id": 0, "time": "10:21"}), "id"),
        (json!({"id": 200, "time": "10:21", "notes": 5}), "notes"),
        (json!({"id": 200, "time": "x".repeat(101)}), "time"),
    ] {
        let problem = oneshot(&SERVICE, "POST", RECORD, &body.to_string())
            .await
            .problem(422);
        assert_eq!(problem["field"], field, "{body}");
    }
}

#[tokio::test]
async fn bad_path_parameters_are_400_and_unknown_routes_and_methods_are_problems() {
    oneshot(&SERVICE, "GET", "/opd/inspection/history/-1", "")
        .await
        .problem(400);
    oneshot(&SERVICE, "GET", "/opd/inspection/nothing", "")
        .await
        .problem(404);
    oneshot(&SERVICE, "GET", RECORD, "").await.problem(405);
}
