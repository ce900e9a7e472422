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

/// Holds today's counter row, so that a registration or a token reset waits on it until the
/// returned transaction commits or is dropped.
pub async fn hold_the_counter(app: &TestApp) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("select * from token_counters for update")
        .execute(&mut *holder)
        .await
        .unwrap();
    holder
}

/// Waits until some request of the service waits on a row lock (the one the test holds).
pub async fn until_a_request_waits_on_the_counter(app: &TestApp) {
    opd_testing::eventually("a request to wait on the counter row", || async {
        let waiting = app
            .count("select count(*) from pg_stat_activity where wait_event_type = 'Lock'")
            .await;
        (waiting > 0).then_some(())
    })
    .await;
}
