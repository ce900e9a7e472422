use opd_testing::{TestApp, TestAppBuilder};
use serde_json::{Value, json};

pub const REGISTER: &str = "/opd/patient/register";

/// The registration service under test, with its token day pinned.
pub async fn spawn_app() -> TestApp {
    started(TestApp::builder(&registration::SERVICE)).await
}

/// Starts `builder` and pins the token day, so that a run crossing midnight (UTC) does not
/// split a count of tokens over two days.
pub async fn started(builder: TestAppBuilder) -> TestApp {
    let app = builder.spawn().await;
    app.execute(
        "create or replace function token_day() returns date
             language sql stable as $$ select date '2021-07-12' $$",
    )
    .await;
    app
}

pub fn builder() -> TestAppBuilder {
    TestApp::builder(&registration::SERVICE)
}

/// The book's patient, with the given id.
pub fn patient(id: i64) -> Value {
    json!({
        "id": id,
        "full_name": "chanaka fernando",
        "address": "44, sw19, london",
        "sex": "male",
        "phone": 222222222
    })
}

/// Registers `patient(id)`, which must succeed, and returns the token.
pub async fn register(app: &TestApp, id: i64) -> i64 {
    app.post_expect(REGISTER, &patient(id), 201).await["token"]
        .as_i64()
        .expect("a token")
}

pub async fn unpublished(app: &TestApp) -> i64 {
    app.count("select count(*) from outbox where published_at is null")
        .await
}
