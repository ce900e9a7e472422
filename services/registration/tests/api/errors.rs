use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestApp, patient};
use opd_shared::testing::{curl_style, eventually, expect_problem};

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;
    for body in [
        r#"{"id": 200, "full_name": "#,
        "",
        "not json",
        r#"{"id":1,"full_name":"a"} x"#,
    ] {
        let response = curl_style(app.http.post(app.url("/opd/patient/register")), body)
            .send()
            .await
            .unwrap();
        expect_problem(response, 400).await;
    }
}

#[tokio::test]
async fn invalid_or_missing_fields_are_422_and_named() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"full_name": "a"}), "id"),
        (json!({"id": 1}), "full_name"),
        (json!({"id": -3, "full_name": "a"}), "id"),
        (json!({"id": "two hundred", "full_name": "a"}), "id"),
        (json!({"id": 1, "full_name": "   "}), "full_name"),
        (json!({"id": 1, "full_name": "a", "sex": "unknown"}), "sex"),
        (json!({"id": 1, "full_name": "a", "email": "nope"}), "email"),
        (json!({"id": 1, "full_name": "a", "phone": -1}), "phone"),
        (json!({"id": 1, "full_name": "x".repeat(101)}), "full_name"),
        // PostgreSQL text cannot store NUL: refused up front, not a failed insert (500).
        (json!({"id": 1, "full_name": "a\u{0}b"}), "full_name"),
        (
            json!({"id": 1, "full_name": "a", "address": "x\u{0}"}),
            "address",
        ),
        (
            json!({"id": 1, "full_name": "a", "email": "a\u{0}@b.lk"}),
            "email",
        ),
    ];
    for (body, field) in cases {
        let problem = expect_problem(app.register(&body).await, 422).await;
        assert_eq!(problem["field"], field, "{body} → {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{problem}"
        );
    }
}

#[tokio::test]
async fn unknown_patients_are_404() {
    let app = TestApp::spawn().await;
    let response = app.get("/opd/patient/view/404").await;
    expect_problem(response, 404).await;
    let response = app.put("/opd/patient/update", &patient(404)).await;
    expect_problem(response, 404).await;
    let response = app.get("/opd/patient/view/abc").await;
    expect_problem(response, 400).await;
    let response = app.get("/opd/no/such/route").await;
    expect_problem(response, 404).await;
    let response = app
        .http
        .delete(app.url("/opd/patient/register"))
        .send()
        .await
        .unwrap();
    expect_problem(response, 405).await;
}

#[tokio::test]
async fn a_second_registration_of_the_same_patient_is_409_and_changes_nothing() {
    let app = TestApp::spawn().await;
    assert_eq!(app.register(&patient(200)).await.status(), 201);
    let mut changed = patient(200);
    changed["full_name"] = json!("someone else");
    let problem = expect_problem(app.register(&changed).await, 409).await;
    assert!(problem["detail"].as_str().unwrap().contains("200"));
    let view: serde_json::Value = app.get_json("/opd/patient/view/200").await;
    assert_eq!(view["full_name"], "chanaka fernando");
    // Only the first registration produced an event.
    let outbox: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(outbox, 1);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = TestApp::spawn().await;
    let mut body = patient(1);
    body["remarks"] = json!("x".repeat(100 * 1024));
    expect_problem(app.register(&body).await, 413).await;
}

#[tokio::test]
async fn a_database_outage_is_503_and_the_service_recovers() {
    let app = TestApp::spawn().await;
    app.database.take_offline().await;
    expect_problem(app.register(&patient(1)).await, 503).await;
    let response = app.get("/readyz").await;
    expect_problem(response, 503).await;

    app.database.bring_online().await;
    let status = eventually(
        Duration::from_secs(30),
        "registration to work again",
        || async {
            let status = app.register(&patient(1)).await.status();
            (status != 503).then_some(status)
        },
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn readiness_reports_nats_down_and_recovers() {
    let mut app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    eventually(Duration::from_secs(30), "ready", || async {
        let status = app.get("/readyz").await.status();
        (status == 200).then_some(())
    })
    .await;

    app.nats().kill_all();
    eventually(
        Duration::from_secs(30),
        "not ready without NATS",
        || async {
            let response = app.get("/readyz").await;
            (response.status() == 503).then_some(())
        },
    )
    .await;
    // Liveness does not depend on NATS: restarting the process would not help.
    assert_eq!(app.get("/healthz").await.status(), 200);

    app.nats().restart_all().await;
    eventually(Duration::from_secs(30), "ready again", || async {
        let status = app.get("/readyz").await.status();
        (status == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_stuck_database_is_503_not_a_hung_request() {
    let app = TestApp::spawn_with(|settings| settings.database.statement_timeout_ms = 500).await;
    // Another session holds the table: every insert into it waits.
    let blocker_pool = app.database.pool().await;
    let mut blocker = blocker_pool.begin().await.unwrap();
    sqlx::query("lock table patients in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();

    let started = std::time::Instant::now();
    expect_problem(app.register(&patient(1)).await, 503).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    blocker.rollback().await.unwrap();
    assert_eq!(app.register(&patient(1)).await.status(), 201);
}
