//! Request validation, answered in-process: no socket, no database, no NATS.

use opd_testing::oneshot;
use registration::SERVICE;
use serde_json::json;

use crate::helpers::{REGISTER, patient};

#[tokio::test]
async fn malformed_json_is_400() {
    for body in [
        r#"{"id": 200, "full_name": "#,
        "",
        "not json",
        r#"{"id":1,"full_name":"a"} x"#,
    ] {
        oneshot(&SERVICE, "POST", REGISTER, body).await.problem(400);
    }
}

#[tokio::test]
async fn invalid_or_missing_fields_are_422_and_named() {
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
        for (method, path) in [("POST", REGISTER), ("PUT", "/opd/patient/update")] {
            let problem = oneshot(&SERVICE, method, path, &body.to_string())
                .await
                .problem(422);
            assert_eq!(problem["field"], field, "{method} {body} → {problem}");
            assert!(
                problem["detail"].as_str().unwrap().contains(field),
                "{problem}"
            );
        }
    }
}

#[tokio::test]
async fn bad_path_parameters_are_400_and_unknown_routes_and_methods_are_problems() {
    for path in [
        "/opd/patient/view/abc",
        "/opd/patient/view/-1",
        "/opd/patient/token/abc",
        "/opd/patient/token/reset/abc",
    ] {
        oneshot(&SERVICE, "GET", path, "").await.problem(400);
    }
    oneshot(&SERVICE, "GET", "/opd/no/such/route", "")
        .await
        .problem(404);
    oneshot(&SERVICE, "DELETE", REGISTER, "").await.problem(405);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let mut body = patient(1);
    body["remarks"] = json!("x".repeat(100 * 1024));
    oneshot(&SERVICE, "POST", REGISTER, &body.to_string())
        .await
        .problem(413);
}

#[tokio::test]
async fn the_in_process_router_is_the_one_production_serves() {
    // Health, readiness, metrics and the OpenAPI document come with the API, as in production:
    // with the database and NATS out of reach, the service is alive but not ready.
    assert_eq!(oneshot(&SERVICE, "GET", "/healthz", "").await.status, 200);
    assert_eq!(oneshot(&SERVICE, "GET", "/readyz", "").await.status, 503);
    let metrics = oneshot(&SERVICE, "GET", "/metrics", "").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("opd_outbox_published_total"),
        "{}",
        metrics.body
    );
    assert_eq!(
        oneshot(&SERVICE, "GET", "/openapi.json", "").await.status,
        200
    );
}
