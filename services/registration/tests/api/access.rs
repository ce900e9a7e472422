//! Who may call what: every route of the OpenAPI document, with no token, a forged one, the
//! wrong roles and the right ones.

use registration::SERVICE;

#[tokio::test]
async fn every_route_answers_401_without_a_valid_token_and_403_without_its_role() {
    opd_testing::auth::check_every_route(&SERVICE).await;
}

#[tokio::test]
async fn with_authentication_off_anyone_may_call_and_readyz_says_so() {
    let app = opd_testing::TestApp::builder(&SERVICE)
        .settings(|settings| settings.auth.enabled = false)
        .spawn()
        .await;
    let anonymous = reqwest::Client::new();
    let body = serde_json::json!({"id": 5, "full_name": "anyone"});
    let registered = anonymous
        .post(app.url("/opd/patient/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let ready: serde_json::Value = anonymous
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ready["authentication"]
            .as_str()
            .is_some_and(|text| text.starts_with("OFF")),
        "{ready}"
    );
}

#[tokio::test]
async fn readyz_says_authentication_is_on_by_default() {
    let app = opd_testing::TestApp::spawn(&SERVICE).await;
    let ready = app.get_expect("/readyz", 200).await;
    assert_eq!(ready["authentication"], "on");
    let anonymous = reqwest::Client::new();
    let refused = anonymous
        .get(app.url("/opd/patient/view/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}
