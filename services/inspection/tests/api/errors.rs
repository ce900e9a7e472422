use opd_testing::expect_problem;

use crate::helpers::{RECORD, inspection, pending_count, registered, spawn_app};

#[tokio::test]
async fn recording_for_an_unknown_patient_is_404_and_for_one_not_waiting_409() {
    let app = spawn_app().await;
    expect_problem(app.post(RECORD, &inspection(999)).await, 404).await;

    registered(&app, 200, 1).await;
    pending_count(&app, 1).await;
    app.post_expect(RECORD, &inspection(200), 201).await;
    let problem = expect_problem(app.post(RECORD, &inspection(200)).await, 409).await;
    assert!(problem["detail"].as_str().unwrap().contains("not waiting"));
    // Neither failure wrote an inspection or an event.
    assert_eq!(app.count("select count(*) from inspections").await, 1);
    assert_eq!(app.count("select count(*) from outbox").await, 1);

    expect_problem(app.get("/opd/inspection/history/999").await, 404).await;
}

#[tokio::test]
async fn an_unforeseen_database_error_is_503_and_its_text_stays_in_the_log() {
    let app = spawn_app().await;
    registered(&app, 200, 1).await;
    pending_count(&app, 1).await;
    // A rolling deploy gone wrong: a table this version reads is missing.
    app.execute("alter table inspections rename to inspections_elsewhere")
        .await;
    let problem = expect_problem(app.post(RECORD, &inspection(200)).await, 503).await;
    assert_eq!(problem["type"], "/problems/service-unavailable");
    let detail = problem["detail"].as_str().unwrap();
    assert!(!detail.contains("inspections"), "{detail}");
    // Nothing half-done: the patient still waits.
    pending_count(&app, 1).await;

    app.execute("alter table inspections_elsewhere rename to inspections")
        .await;
    app.post_expect(RECORD, &inspection(200), 201).await;
}
