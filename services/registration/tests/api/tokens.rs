use std::collections::HashSet;
use std::time::Duration;

use futures::future::join_all;
use opd_testing::expect_problem;
use serde_json::json;

use crate::helpers::{
    builder, hold_the_counter, register, spawn_app, started, until_a_request_waits_on_the_counter,
};

#[tokio::test]
async fn two_hundred_concurrent_registrations_get_two_hundred_distinct_tokens() {
    // All 200 queue for ten connections and one counter row: this test is about uniqueness,
    // so it gives them the time that production's acquire timeout would.
    let app = started(
        builder().settings(|settings| settings.database.acquire_timeout = Duration::from_secs(10)),
    )
    .await;
    let tokens = join_all((1..=200).map(|id| register(&app, id))).await;
    let distinct: HashSet<i64> = tokens.iter().copied().collect();
    // No repeats and no gaps: every number from 1 to 200 was handed out once.
    assert_eq!(distinct, (1..=200).collect());
}

#[tokio::test]
async fn tokens_survive_a_restart_of_the_service() {
    let mut app = spawn_app().await;
    register(&app, 1).await;
    app.restart().await;
    let token = app.get_expect("/opd/patient/token/1", 200).await;
    assert_eq!(token, json!({"id": 1, "token": 2, "site": "hospital"}));
}

#[tokio::test]
async fn a_token_is_only_issued_to_a_registered_patient() {
    let app = spawn_app().await;
    let problem = expect_problem(app.get("/opd/patient/token/300").await, 404).await;
    assert!(problem["detail"].as_str().unwrap().contains("300"));
    // No token was consumed and nothing was published.
    assert_eq!(app.count("select count(*) from outbox").await, 0);
    assert_eq!(app.count("select count(*) from token_counters").await, 0);
    assert_eq!(register(&app, 300).await, 1);
}

#[tokio::test]
async fn reset_continues_the_sequence_and_never_goes_back() {
    let app = spawn_app().await;
    assert_eq!(
        app.get_expect("/opd/patient/token/reset/10", 200).await,
        "Token reset successful"
    );
    assert_eq!(register(&app, 1).await, 11);

    expect_problem(app.get("/opd/patient/token/reset/5").await, 409).await;
    assert_eq!(register(&app, 2).await, 12);
}

#[tokio::test]
async fn each_day_has_its_own_sequence() {
    let app = spawn_app().await;
    assert_eq!(register(&app, 1).await, 1);
    assert_eq!(register(&app, 2).await, 2);
    app.execute(
        "create or replace function token_day() returns date
             language sql stable as $$ select date '2021-07-13' $$",
    )
    .await;
    let next_day = app.get_expect("/opd/patient/token/1", 200).await;
    assert_eq!(next_day, json!({"id": 1, "token": 1, "site": "hospital"}));
    assert_eq!(
        app.count("select count(*) from issued_tokens").await,
        3,
        "every token stays on record"
    );
}

#[tokio::test]
async fn a_reset_that_straddles_midnight_is_still_answered_409_not_500() {
    let app = spawn_app().await;
    // The day turns when the test says so: token_day() reads the transaction's start time, as
    // the real one does, against a "midnight" the test moves.
    app.execute(
        "create table test_midnight (at timestamptz not null);
         insert into test_midnight values ('infinity');
         create or replace function token_day() returns date language sql stable as $$
             select date '2021-07-12'
                 + case when now() >= (select at from test_midnight) then 1 else 0 end
         $$",
    )
    .await;
    register(&app, 1).await;

    // Hold today's counter row, so that the reset's first statement waits on it; move midnight
    // while it waits; then let it go. Its next statement then starts after midnight.
    let holder = hold_the_counter(&app).await;
    let reset = tokio::spawn({
        let url = app.url("/opd/patient/token/reset/0");
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap() }
    });
    until_a_request_waits_on_the_counter(&app).await;
    app.execute("update test_midnight set at = clock_timestamp()")
        .await;
    holder.commit().await.unwrap();

    let answer = reset.await.unwrap();
    expect_problem(answer, 409).await;
}

#[tokio::test]
async fn a_reset_is_bounded_by_the_tokens_handed_out_today() {
    let app = spawn_app().await;
    // A wild reset is refused: it would spoil every number called after it.
    let problem = expect_problem(app.get("/opd/patient/token/reset/4294967295").await, 409).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("10000"),
        "{problem}"
    );
    // A mistaken one can be undone while no token above it was handed out...
    app.get_expect("/opd/patient/token/reset/10000", 200).await;
    app.get_expect("/opd/patient/token/reset/0", 200).await;
    assert_eq!(register(&app, 1).await, 1);
    // ...and the bounds follow what was handed out, not the counter.
    app.get_expect("/opd/patient/token/reset/10001", 200).await;
    expect_problem(app.get("/opd/patient/token/reset/10002").await, 409).await;
    assert_eq!(register(&app, 2).await, 10_002);
    expect_problem(app.get("/opd/patient/token/reset/10001").await, 409).await;
    app.get_expect("/opd/patient/token/reset/10002", 200).await;
    assert_eq!(register(&app, 3).await, 10_003);
}
