//! `Idempotency-Key`: a repeated POST gets the first answer back and has no second effect.

use opd_testing::expect_problem;
use serde_json::{Value, json};

use crate::helpers::{REGISTER, patient, register, spawn_app};

async fn post_with_key(
    app: &opd_testing::TestApp,
    path: &str,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_repeated_registration_with_the_same_key_gets_the_first_answer_and_no_second_effect() {
    let app = spawn_app().await;
    let first = post_with_key(&app, REGISTER, "key-1", &patient(7)).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    let again = post_with_key(&app, REGISTER, "key-1", &patient(7)).await;
    assert_eq!(again.status(), 201, "the first answer, not a 409");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["content-type"], "application/json");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(app.count("select count(*) from outbox").await, 1);

    // Without the key, the same request is a new one: a duplicate registration.
    expect_problem(app.post(REGISTER, &patient(7)).await, 409).await;
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_409_and_a_malformed_key_400() {
    let app = spawn_app().await;
    post_with_key(&app, REGISTER, "key-2", &patient(8)).await;
    let problem = expect_problem(
        post_with_key(&app, REGISTER, "key-2", &patient(9)).await,
        409,
    )
    .await;
    assert_eq!(problem["type"], "/problems/idempotency-key-reused");
    assert_eq!(
        app.count("select count(*) from patients where id = 9")
            .await,
        0
    );

    let problem = expect_problem(
        post_with_key(&app, REGISTER, "has space", &patient(9)).await,
        400,
    )
    .await;
    assert_eq!(problem["type"], "/problems/invalid-idempotency-key");
}

#[tokio::test]
async fn the_post_route_for_a_new_visit_token_honours_the_key() {
    let app = spawn_app().await;
    register(&app, 1).await;
    let path = "/opd/patient/token/1";
    let first: Value = post_with_key(&app, path, "visit-1", &json!(null))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first, json!({"id": 1, "token": 2, "site": "hospital"}));
    let again: Value = post_with_key(&app, path, "visit-1", &json!(null))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        again, first,
        "one token, however often the request is repeated"
    );
    // The book's GET still works, and is not idempotent.
    assert_eq!(
        app.get_expect(path, 200).await,
        json!({"id": 1, "token": 3, "site": "hospital"})
    );
}

#[tokio::test]
async fn a_request_the_database_could_not_serve_releases_its_key_for_the_retry() {
    let app = spawn_app().await;
    // The key is recorded, then the handler meets a database that cannot serve it: a 503,
    // with nothing done.
    app.execute("alter table patients rename to patients_elsewhere")
        .await;
    let failed = post_with_key(&app, REGISTER, "key-3", &patient(5)).await;
    assert_eq!(failed.status(), 503);
    app.execute("alter table patients_elsewhere rename to patients")
        .await;
    let retried = post_with_key(&app, REGISTER, "key-3", &patient(5)).await;
    assert_eq!(
        retried.status(),
        201,
        "the retry ran, rather than replaying the 503"
    );
    assert!(retried.headers().get("idempotent-replayed").is_none());
}

/// Leaves `key` as a request that died with its process would: recorded, never answered,
/// `age_secs` ago.
async fn abandon_key(app: &opd_testing::TestApp, key: &str, body: &Value, age_secs: u32) {
    abandon_key_at(app, REGISTER, key, body, age_secs, false).await;
}

async fn abandon_key_at(
    app: &opd_testing::TestApp,
    path: &str,
    key: &str,
    body: &Value,
    age_secs: u32,
    effect_committed: bool,
) {
    let body = serde_json::to_vec(body).unwrap();
    sqlx::query(
        "insert into idempotency_keys
             (key, method, path, request_body, created_at, effect_committed)
         values ($1, 'POST', $2, $3, now() - make_interval(secs => $4), $5)",
    )
    .bind(key)
    .bind(path)
    .bind(body)
    .bind(f64::from(age_secs))
    .bind(effect_committed)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_key_left_in_progress_by_a_dead_process_is_taken_over_once_it_is_stale() {
    let app = spawn_app().await;
    // Still young: its request may be running; the repeat must wait.
    abandon_key(&app, "young", &patient(10), 1).await;
    let problem = expect_problem(
        post_with_key(&app, REGISTER, "young", &patient(10)).await,
        409,
    )
    .await;
    assert_eq!(problem["type"], "/problems/request-in-progress");

    // Older than twice the request timeout (15 s): its process died before the effect.
    abandon_key(&app, "dead-before", &patient(11), 60).await;
    let retried = post_with_key(&app, REGISTER, "dead-before", &patient(11)).await;
    assert_eq!(retried.status(), 201, "the repeat ran the request");
    let again = post_with_key(&app, REGISTER, "dead-before", &patient(11)).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");

    // Its process died after committing the effect: the rerun meets the state rule, and
    // nothing is done twice.
    app.post_expect(REGISTER, &patient(12), 201).await;
    abandon_key(&app, "dead-after", &patient(12), 60).await;
    let problem = expect_problem(
        post_with_key(&app, REGISTER, "dead-after", &patient(12)).await,
        409,
    )
    .await;
    assert_eq!(problem["type"], "/problems/conflict");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("already registered"),
        "{problem}"
    );
    assert_eq!(
        app.count("select count(*) from patients where id in (11, 12)")
            .await,
        2
    );
    assert_eq!(app.count("select count(*) from outbox").await, 2);
}

#[tokio::test]
async fn a_dead_request_whose_additive_effect_was_committed_is_not_run_again() {
    let app = spawn_app().await;
    register(&app, 20).await;
    let path = "/opd/patient/token/20";
    // A keyed token request marks its key in the transaction that issues the token.
    post_with_key(&app, path, "visit-20", &json!(null)).await;
    assert_eq!(
        app.count(
            "select count(*) from idempotency_keys where key = 'visit-20' and effect_committed"
        )
        .await,
        1
    );

    // A request that died after issuing its token: the repeat is told, not given a third.
    abandon_key_at(&app, path, "died-20", &json!(null), 60, true).await;
    let problem = expect_problem(
        post_with_key(&app, path, "died-20", &json!(null)).await,
        409,
    )
    .await;
    assert_eq!(problem["type"], "/problems/answer-lost");
    assert_eq!(
        app.count("select count(*) from issued_tokens where patient_id = 20")
            .await,
        2
    );
    // One that died before issuing it is run again.
    abandon_key_at(&app, path, "died-early-20", &json!(null), 60, false).await;
    assert_eq!(
        post_with_key(&app, path, "died-early-20", &json!(null))
            .await
            .json::<Value>()
            .await
            .unwrap(),
        json!({"id": 20, "token": 3, "site": "hospital"})
    );
}

#[tokio::test]
async fn an_oversized_body_with_a_key_is_413_like_any_other() {
    let app = spawn_app().await;
    let mut body = patient(6);
    body["full_name"] = json!("x".repeat(70_000));
    let problem = expect_problem(post_with_key(&app, REGISTER, "key-4", &body).await, 413).await;
    assert_eq!(problem["type"], "/problems/payload-too-large");
}

#[tokio::test]
async fn keys_and_published_events_are_pruned_after_their_retention() {
    let app = crate::helpers::started(crate::helpers::builder().settings(|settings| {
        // Long enough for the checks just after the request to find the rows still there.
        settings.http.idempotency_retention = std::time::Duration::from_secs(1);
        settings.outbox.retention = std::time::Duration::from_secs(1);
        settings.outbox.prune_interval = std::time::Duration::from_millis(100);
    }))
    .await;
    post_with_key(&app, REGISTER, "key-5", &patient(4)).await;
    assert_eq!(app.count("select count(*) from idempotency_keys").await, 1);
    // The key keeps a hash of the request, not the request.
    assert_eq!(
        app.count(
            "select count(*) from idempotency_keys
             where request_body is null and length(request_hash) = 32"
        )
        .await,
        1
    );
    opd_testing::eventually("the key and the published event to be pruned", || async {
        let keys = app.count("select count(*) from idempotency_keys").await;
        let outbox = app.count("select count(*) from outbox").await;
        (keys == 0 && outbox == 0).then_some(())
    })
    .await;
    // The patient stays; only the bookkeeping went.
    assert_eq!(app.count("select count(*) from patients").await, 1);
}

#[tokio::test]
async fn one_round_of_housekeeping_deletes_every_expired_row_however_many() {
    let app = crate::helpers::builder()
        .without_background_tasks()
        .spawn()
        .await;
    // More than two batches of expired rows in each table (n = 1 to 11999), and two fresh rows
    // that must stay (n = 0 and 12000).
    for (table, rows) in [
        (
            "outbox",
            "insert into outbox (id, subject, event_type, source, payload, published_at)
             select gen_random_uuid(), 'patient.register', 't', 's', '{}',
                    now() - make_interval(days => 2 * (n % 12000 > 0)::int)
             from generate_series(0, 12000) as n",
        ),
        (
            "processed_events",
            "insert into processed_events (consumer, event_id, subject, processed_at)
             select 'c', gen_random_uuid(), 'patient.register',
                    now() - make_interval(days => 40 * (n % 12000 > 0)::int)
             from generate_series(0, 12000) as n",
        ),
        (
            "idempotency_keys",
            "insert into idempotency_keys (key, method, path, request_hash, created_at)
             select 'k' || n, 'POST', '/p', sha256('x'),
                    now() - make_interval(days => 2 * (n % 12000 > 0)::int)
             from generate_series(0, 12000) as n",
        ),
    ] {
        sqlx::query(rows).execute(&app.pool).await.unwrap();
        assert_eq!(
            app.count(&format!("select count(*) from {table}")).await,
            12001
        );
    }
    let swept = app.housekeeping().sweep().await.unwrap();
    assert_eq!(
        (swept.outbox, swept.inbox, swept.keys),
        (11999, 11999, 11999)
    );
    for table in ["outbox", "processed_events", "idempotency_keys"] {
        assert_eq!(
            app.count(&format!("select count(*) from {table}")).await,
            2,
            "{table}: the two fresh rows stay"
        );
    }
}
