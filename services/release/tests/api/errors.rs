use opd_shared::domain::Disposition;
use opd_testing::expect_problem;
use serde_json::json;

use crate::helpers::{DISCHARGE, release_requested, spawn_app};

#[tokio::test]
async fn discharging_an_unknown_patient_is_404_and_a_released_one_409() {
    let app = spawn_app().await;
    release_requested(&app, 200, Disposition::Discharge).await;

    let unknown = json!({"id": 999, "time": "21:35", "state": "discharge"});
    expect_problem(app.post(DISCHARGE, &unknown).await, 404).await;

    let valid = json!({"id": 200, "time": "21:35", "state": "discharge"});
    app.post_expect(DISCHARGE, &valid, 201).await;
    let problem = expect_problem(app.post(DISCHARGE, &valid).await, 409).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("already been released")
    );
    assert_eq!(app.count("select count(*) from discharges").await, 1);
}
