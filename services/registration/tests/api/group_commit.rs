//! Registrations that wait together are committed together (`registration::registrar`), and
//! that changes nothing a client can see but the time: each gets its own answer, tokens stay
//! gapless and in order, a duplicate is still a 409, and a registration the database refuses
//! fails only its own request.

use std::time::Duration;

use futures::future::join_all;
use opd_testing::{TestApp, expect_problem};
use serde_json::Value;

use crate::helpers::{
    REGISTER, hold_the_counter, patient, register, spawn_app, until_a_request_waits_on_the_counter,
};

/// Posts `bodies` at once while the test holds the day's counter row, so that they queue
/// behind a registration (patient 2) that waits on it; then lets the row go. Answers in the
/// order of `bodies`.
async fn register_together(app: &TestApp, bodies: Vec<Value>) -> Vec<reqwest::Response> {
    register(app, 1).await;
    let holder = hold_the_counter(app).await;
    let first = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url(REGISTER));
        async move { client.post(url).json(&patient(2)).send().await.unwrap() }
    });
    until_a_request_waits_on_the_counter(app).await;
    let together = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url(REGISTER));
        async move {
            join_all(
                bodies
                    .iter()
                    .map(|body| client.post(&url).json(body).send()),
            )
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
        }
    });
    // Time for every request to reach the queue: none can be committed while the row is held.
    tokio::time::sleep(Duration::from_millis(500)).await;
    holder.commit().await.unwrap();
    assert_eq!(first.await.unwrap().status(), 201);
    together.await.unwrap()
}

async fn tokens_of(answers: Vec<reqwest::Response>) -> Vec<i64> {
    let mut tokens = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), 201);
        let body: Value = answer.json().await.unwrap();
        tokens.push(body["token"].as_i64().unwrap());
    }
    tokens
}

#[tokio::test]
async fn registrations_that_wait_together_share_one_commit_and_keep_tokens_in_order() {
    let app = spawn_app().await;
    let answers = register_together(&app, (3..=32).map(patient).collect()).await;
    let mut tokens = tokens_of(answers).await;
    tokens.sort_unstable();
    assert_eq!(tokens, (3..=32).collect::<Vec<_>>(), "gapless, no repeats");

    // One transaction writes one `now()`: thirty registrations in (far) fewer commits.
    let commits = app
        .count(
            "select count(distinct created_at) from outbox where (payload->>'token')::bigint >= 3",
        )
        .await;
    assert!(commits <= 3, "30 registrations took {commits} commits");
    // Each event carries its patient's token, in the order the relay publishes them.
    let out_of_order = app
        .count(
            "select count(*) from (
                 select (payload->>'token')::bigint as token,
                        lag((payload->>'token')::bigint) over (order by id) as before
                 from outbox) events
             where token <= before",
        )
        .await;
    assert_eq!(out_of_order, 0);
    let tokens_match = app
        .count(
            "select count(*) from outbox join issued_tokens
                 on issued_tokens.patient_id = (outbox.payload->>'id')::bigint
                and issued_tokens.token = (outbox.payload->>'token')::bigint",
        )
        .await;
    assert_eq!(tokens_match, 32);
}

#[tokio::test]
async fn a_patient_registered_twice_in_one_group_gets_one_token_and_one_409() {
    let app = spawn_app().await;
    let answers =
        register_together(&app, vec![patient(3), patient(7), patient(7), patient(4)]).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 409).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(app.count("select count(*) from issued_tokens").await, 5);
    assert_eq!(app.count("select max(token) from issued_tokens").await, 5);
    assert_eq!(app.count("select count(*) from outbox").await, 5);
    // In one commit: the duplicate did not make the group fall back to one commit each.
    let commits = app
        .count(
            "select count(distinct created_at) from outbox where (payload->>'token')::bigint >= 3",
        )
        .await;
    assert!(commits <= 2, "3 registrations took {commits} commits");
}

#[tokio::test]
async fn a_registration_the_database_refuses_fails_alone() {
    let app = spawn_app().await;
    // A defect the service's checks miss, simulated: the database refuses one name.
    app.execute(
        "create function refuse_a_name() returns trigger language plpgsql as $$
         begin
             if new.full_name = 'refused' then
                 raise exception 'refused' using errcode = 'check_violation';
             end if;
             return new;
         end $$;
         create trigger refuse_a_name before insert on patients
             for each row execute function refuse_a_name()",
    )
    .await;
    let mut refused = patient(99);
    refused["full_name"] = "refused".into();
    let mut bodies: Vec<Value> = (3..=12).map(patient).collect();
    bodies.insert(4, refused);
    let mut answers = register_together(&app, bodies).await;

    expect_problem(answers.remove(4), 500).await;
    let mut tokens = tokens_of(answers).await;
    tokens.sort_unstable();
    assert_eq!(tokens, (3..=12).collect::<Vec<_>>());
    assert_eq!(
        app.count("select count(*) from patients where id = 99")
            .await,
        0
    );
    assert_eq!(app.count("select count(*) from outbox").await, 12);
}
