//! Request validation, answered in-process: no socket, no database, no NATS.

use opd_testing::oneshot;
use release::SERVICE;
use serde_json::json;

use crate::helpers::DISCHARGE;

#[tokio::test]
async fn malformed_json_is_400_and_each_missing_or_invalid_field_is_422() {
    oneshot(&SERVICE, "POST", DISCHARGE, "[").await.problem(400);
    let valid = json!({"id": 200, "time": "21:35", "state": "discharge"});
    for field in ["id", "time", "state"] {
        let mut partial = valid.clone();
        partial.as_object_mut().unwrap().remove(field);
        let problem = oneshot(&SERVICE, "POST", DISCHARGE, &partial.to_string())
            .await
            .problem(422);
        assert_eq!(problem["field"], field);
    }
    let home = json!({"id": 200, "time": "21:35", "state": "home"});
    let problem = oneshot(&SERVICE, "POST", DISCHARGE, &home.to_string())
        .await
        .problem(422);
    assert_eq!(problem["field"], "state");
    oneshot(&SERVICE, "GET", DISCHARGE, "").await.problem(405);
}
