use opd_shared::auth::Role;
use opd_testing::Method;
use serde_json::json;

use crate::helpers::{REGISTER, builder, patient, spawn_app, started};

#[tokio::test]
async fn the_books_curl_walkthrough_gives_the_books_answers() {
    let app = started(builder().settings(opd_testing::book_curl)).await;

    // The book's curl sends JSON with -d and no content type.
    let answer = app
        .curl_expect(
            Method::POST,
            REGISTER,
            r#"{"full_name":"chanaka fernando","address":"44, sw19, london","id":200, "sex":"male", "phone":222222222}"#,
            201,
        )
        .await;
    assert_eq!(answer, json!({"id": 200, "token": 1, "site": "hospital"}));

    assert_eq!(
        app.get_expect("/opd/patient/view/200", 200).await,
        json!({"full_name":"chanaka fernando","address":"44, sw19, london","id":200,"sex":"male","phone":222222222})
    );

    let answer = app
        .curl_expect(
            Method::PUT,
            "/opd/patient/update",
            r#"{"full_name":"chanaka fernando","address":"667/280/6, liyanagemulla, seeduwa","id":200, "sex":"male", "phone":222222222}"#,
            200,
        )
        .await;
    assert_eq!(answer, json!("Record for Patient updated successfully"));
    let view = app.get_expect("/opd/patient/view/200", 200).await;
    assert_eq!(view["address"], "667/280/6, liyanagemulla, seeduwa");

    assert_eq!(
        app.get_expect("/opd/patient/token/200", 200).await,
        json!({"id": 200, "token": 2, "site": "hospital"})
    );

    let home = app.get("/opd/patient/").await;
    assert_eq!(home.text().await.unwrap(), "Registration Service v0.1.0\n");
}

#[tokio::test]
async fn registering_publishes_patient_register_with_cloudevents_headers() {
    let app = spawn_app().await;
    let registrar = opd_testing::auth::token_for("registrar-7", &[Role::Registrar]);
    let response = app
        .client
        .post(app.url(REGISTER))
        .bearer_auth(&registrar)
        .header("x-request-id", "walkthrough-1")
        .json(&patient(200))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], "walkthrough-1");

    let events = app.events_until("patient.register", 1).await;
    assert_eq!(events.len(), 1);
    let (headers, payload) = &events[0];
    assert_eq!(payload, &json!({"id": 200, "token": 1, "site": "hospital"}));
    let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header("ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(
        header("ce-type").as_deref(),
        Some("opd.patient.registered.v1")
    );
    assert_eq!(header("ce-source").as_deref(), Some("/opd/registration"));
    assert_eq!(header("ce-requestid").as_deref(), Some("walkthrough-1"));
    // Who registered the patient: the token's subject, never the token.
    assert_eq!(header("ce-caller").as_deref(), Some("registrar-7"));
    assert!(headers.iter().all(|(_, values)| {
        values
            .iter()
            .all(|value| !value.as_str().contains(&registrar))
    }));
    assert!(header("ce-time").is_some());
    let id = header("ce-id").unwrap();
    assert_eq!(header("Nats-Msg-Id"), Some(id.clone()));
    assert_eq!(
        app.count(&format!("select count(*) from outbox where id = '{id}'"))
            .await,
        1,
        "the event id is the outbox row's"
    );
}

#[tokio::test]
async fn optional_fields_round_trip_and_absent_ones_are_left_out() {
    let app = spawn_app().await;
    let body = json!({
        "id": 7, "full_name": "  Nimali Perera ", "email": "nimali@example.lk",
        "remarks": "allergic to penicillin", "sex": "female"
    });
    app.post_expect(REGISTER, &body, 201).await;
    assert_eq!(
        app.get_expect("/opd/patient/view/7", 200).await,
        json!({"id": 7, "full_name": "Nimali Perera", "email": "nimali@example.lk",
               "remarks": "allergic to penicillin", "sex": "female"})
    );
}
