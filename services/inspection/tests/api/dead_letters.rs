//! The operator's round trip: a parked message is listed with its reason, a page at a time, and
//! handled again from the database once its cause is fixed, with nothing sent back through the
//! stream.

use std::time::Duration;

use async_nats::HeaderMap;
use opd_testing::stream::publish_raw;
use opd_testing::{eventually, expect_problem};
use serde_json::{Value, json};

use crate::helpers::{builder, pending_count, registered};

const DEAD_LETTERS: &str = "/admin/dead-letters";

/// A consumer that gives up after two quick deliveries.
async fn impatient_app() -> opd_testing::TestApp {
    builder()
        .settings(|settings| {
            settings.consumer.retry.initial = Duration::from_millis(10);
            settings.consumer.retry.max = Duration::from_millis(10);
            settings.consumer.max_deliveries = 2;
        })
        .spawn()
        .await
}

async fn dead_letters_until(app: &opd_testing::TestApp, count: usize) -> Vec<Value> {
    eventually(&format!("{count} dead letters"), || async {
        let letters = app.get_expect(DEAD_LETTERS, 200).await;
        let letters = letters.as_array().cloned().unwrap_or_default();
        (letters.len() == count).then_some(letters)
    })
    .await
}

#[tokio::test]
async fn a_parked_event_is_listed_and_applied_when_retried_after_the_fix() {
    let app = impatient_app().await;
    // What a bad deploy might do: the table the handler writes to is gone.
    app.execute("alter table visits rename to visits_elsewhere")
        .await;
    registered(&app, 200, 1).await;

    let letters = dead_letters_until(&app, 1).await;
    let letter = &letters[0];
    assert_eq!(letter["subject"], "patient.register");
    assert_eq!(letter["consumer"], inspection::REGISTRATIONS_CONSUMER);
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 2 deliveries"),
        "{letter}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(letter["payload"].as_str().unwrap()).unwrap(),
        json!({"id": 200, "token": 1, "site": "hospital"})
    );
    assert!(letter["headers"]["ce-id"].is_array(), "{letter}");

    // While the cause is still there, a retry says so and leaves it parked.
    let retry = format!("{DEAD_LETTERS}/{}/retry", letter["id"]);
    let problem = expect_problem(app.post(&retry, &json!({})).await, 409).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("stays parked"),
        "{problem}"
    );
    // Fixed; retry it. It is handled from the database: the stream gains nothing.
    app.execute("alter table visits_elsewhere rename to visits")
        .await;
    let messages = app.stream_info().await.state.messages;
    assert_eq!(
        app.post_expect(&retry, &json!({}), 200).await,
        json!({"retried": 1, "still_parked": 0, "remaining": 0})
    );
    assert_eq!(app.stream_info().await.state.messages, messages);
    assert_eq!(
        pending_count(&app, 1).await,
        [json!({"id": 200, "token": 1, "site": "hospital"})]
    );
    assert_eq!(app.get_expect(DEAD_LETTERS, 200).await, json!([]));
    app.assert_handled_once(1).await;
    // It is gone: a second retry finds nothing.
    expect_problem(app.post(&retry, &json!({})).await, 404).await;
}

#[tokio::test]
async fn retrying_all_handles_what_it_can_and_leaves_the_rest_parked_saying_why() {
    let app = impatient_app().await;
    for id in [1, 2] {
        // No event headers: these can never be handled.
        let payload = format!(r#"{{"id":{id},"token":{id}}}"#).into_bytes();
        publish_raw(
            &app.settings.nats,
            "patient.register",
            HeaderMap::new(),
            payload,
        )
        .await;
    }
    let before = dead_letters_until(&app, 2).await;
    let messages = app.stream_info().await.state.messages;

    assert_eq!(
        app.post_expect(&format!("{DEAD_LETTERS}/retry"), &json!({}), 200)
            .await,
        json!({"retried": 0, "still_parked": 2, "remaining": 0})
    );
    // The same rows, still parked, with why; nothing handled, nothing published.
    let after = app.get_expect(DEAD_LETTERS, 200).await;
    assert_eq!(after[0]["id"], before[0]["id"]);
    assert_eq!(after[1]["id"], before[1]["id"]);
    assert!(
        after[0]["reason"].as_str().unwrap().contains("ce-id"),
        "{after}"
    );
    assert_eq!(app.count("select count(*) from processed_events").await, 0);
    assert_eq!(app.stream_info().await.state.messages, messages);
    // A loop of such retries is held to one a second.
    let again = app.post(&format!("{DEAD_LETTERS}/retry"), &json!({})).await;
    assert_eq!(again.headers()["retry-after"], "1");
    let problem = expect_problem(again, 429).await;
    assert_eq!(problem["type"], "/problems/too-many-requests");
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Letters that keep failing stay first: a call from the cursor tries the ones behind them.
    let first = before[0]["id"].as_i64().unwrap();
    assert_eq!(
        app.post_expect(
            &format!("{DEAD_LETTERS}/retry?after={first}"),
            &json!({}),
            200
        )
        .await,
        json!({"retried": 0, "still_parked": 1, "remaining": 0})
    );
    // The query string is part of the request: the same Idempotency-Key with another cursor is
    // a key reused for a different request, not a repeat.
    let keyed = |path: String| {
        app.client
            .post(app.url(&path))
            .header("idempotency-key", "retry-from-cursor")
            .send()
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        keyed(format!("{DEAD_LETTERS}/retry?after={first}"))
            .await
            .unwrap()
            .status(),
        200
    );
    let reused = keyed(format!("{DEAD_LETTERS}/retry")).await.unwrap();
    let problem = expect_problem(reused, 409).await;
    assert_eq!(problem["type"], "/problems/idempotency-key-reused");
}

#[tokio::test]
async fn a_retry_cursor_outside_the_documented_range_is_refused() {
    let app = impatient_app().await;
    // 2^53 - 1 is the largest the document allows; one more, and a negative, are refused.
    for (after, status) in [
        ("9007199254740991", 200),
        ("9007199254740992", 400),
        ("16495226441311814", 400),
        ("-1", 400),
    ] {
        let response = app
            .post(&format!("{DEAD_LETTERS}/retry?after={after}"), &json!({}))
            .await;
        if status == 200 {
            assert_eq!(response.status(), 200, "after={after}");
        } else {
            let problem = expect_problem(response, status).await;
            assert_eq!(
                problem["type"], "/problems/invalid-query-parameter",
                "after={after}"
            );
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap()
                    .contains("9007199254740991"),
                "{problem}"
            );
        }
        // Retries are held to one a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
}

#[tokio::test]
async fn the_dead_letters_come_a_page_at_a_time() {
    let app = impatient_app().await;
    for id in 1..=3 {
        publish_raw(
            &app.settings.nats,
            "patient.register",
            HeaderMap::new(),
            format!(r#"{{"id":{id}}}"#).into_bytes(),
        )
        .await;
    }
    dead_letters_until(&app, 3).await;
    let first = app.get(&format!("{DEAD_LETTERS}?limit=2")).await;
    let link = first.headers()["link"].to_str().unwrap().to_owned();
    let first: Value = first.json().await.unwrap();
    assert_eq!(first.as_array().unwrap().len(), 2);
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let second = app.get_expect(&next, 200).await;
    assert_eq!(second.as_array().unwrap().len(), 1);
    assert!(second[0]["id"].as_i64() > first[1]["id"].as_i64());
    // No patient filter here: a parked payload may name none.
    expect_problem(app.get(&format!("{DEAD_LETTERS}?patient=1")).await, 400).await;
}
