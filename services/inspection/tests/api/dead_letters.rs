//! The operator's round trip: a parked message is listed with its reason, and retried once its
//! cause is fixed.

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
        json!({"id": 200, "token": 1})
    );
    assert!(letter["headers"]["ce-id"].is_array(), "{letter}");

    // Fixed; retry it.
    app.execute("alter table visits_elsewhere rename to visits")
        .await;
    let retry = format!("{DEAD_LETTERS}/{}/retry", letter["id"]);
    assert_eq!(
        app.post_expect(&retry, &json!({}), 202).await,
        json!({"retried": 1})
    );
    assert_eq!(
        pending_count(&app, 1).await,
        [json!({"id": 200, "token": 1})]
    );
    assert_eq!(app.get_expect(DEAD_LETTERS, 200).await, json!([]));
    app.assert_handled_once(1).await;
    // It is gone: a second retry finds nothing.
    expect_problem(app.post(&retry, &json!({})).await, 404).await;
}

#[tokio::test]
async fn retrying_all_puts_every_parked_message_back_and_what_still_fails_is_parked_again() {
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

    assert_eq!(
        app.post_expect(&format!("{DEAD_LETTERS}/retry"), &json!({}), 202)
            .await,
        json!({"retried": 2})
    );
    // Delivered again, and parked again: new rows, for new stream messages.
    let after = eventually("both to be parked again", || async {
        let letters = dead_letters_until(&app, 2).await;
        (letters[0]["id"] != before[0]["id"] && letters[1]["id"] != before[1]["id"])
            .then_some(letters)
    })
    .await;
    assert!(after[0]["stream_sequence"].as_i64() > before[1]["stream_sequence"].as_i64());
    // Parked again, never handled.
    assert_eq!(app.count("select count(*) from processed_events").await, 0);
}
