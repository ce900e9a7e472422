use std::time::Duration;

use inspection::REGISTRATIONS_CONSUMER;
use inspection::events::RegistrationHandler;
use opd_shared::events::PatientRegistered;
use opd_testing::stream::{new_meta, publish_meta, publish_raw};

use crate::helpers::{builder, registered, registration};

fn series(name: &str, labels: &str) -> String {
    format!(r#"{name}{{durable="{REGISTRATIONS_CONSUMER}"{labels}}}"#)
}

fn outcome(outcome: &str) -> String {
    series(
        "opd_consumer_messages_total",
        &format!(r#",outcome="{outcome}""#),
    )
}

#[tokio::test]
async fn lag_rises_as_events_arrive_and_falls_as_they_are_handled_each_counted_by_outcome() {
    let app = builder().without_background_tasks().spawn().await;
    let consumer = app.consumer::<RegistrationHandler>(REGISTRATIONS_CONSUMER);
    // Binding creates the durable consumer; nothing is waiting yet.
    consumer.step(10, Duration::from_millis(100)).await.unwrap();
    let pending = series("opd_consumer_pending", "");
    assert_eq!(app.metric(&pending).await, Some(0.0));
    assert_eq!(app.metric("opd_nats_connected").await, Some(1.0));

    let meta = registered(&app, 200, 1).await;
    registered(&app, 201, 2).await;
    // The first event again under a new message id (a duplicate only the inbox catches), and a
    // message that can never be handled.
    publish_meta(&app.settings.nats, &registration(200, 1), &meta).await;
    publish_raw(
        &app.settings.nats,
        "patient.register",
        new_meta::<PatientRegistered>().to_headers(),
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(app.metric(&pending).await, Some(4.0));
    assert_eq!(app.metric("opd_dead_letters").await, Some(0.0));

    let outcomes = consumer.step(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    assert_eq!(app.metric(&pending).await, Some(0.0));
    assert_eq!(
        app.metric(&series("opd_consumer_ack_pending", "")).await,
        Some(0.0)
    );
    assert_eq!(app.metric(&outcome("applied")).await, Some(2.0));
    assert_eq!(app.metric(&outcome("duplicate")).await, Some(1.0));
    assert_eq!(app.metric(&outcome("parked")).await, Some(1.0));
    assert_eq!(app.metric("opd_dead_letters").await, Some(1.0));
    // One hop observed per applied event, measured from its ce-time.
    assert_eq!(
        app.metric(&series("opd_consumer_hop_duration_seconds_count", ""))
            .await,
        Some(2.0)
    );
    let hop_seconds = app
        .metric(&series("opd_consumer_hop_duration_seconds_sum", ""))
        .await;
    assert!(
        hop_seconds.is_some_and(|sum| sum > 0.0 && sum < 60.0),
        "hop sum {hop_seconds:?}"
    );

    // The operator retries the parked message; it still cannot be handled and stays parked
    // (nothing goes back through the stream, so the consumer sees nothing new), and the gauge
    // follows the table.
    let report = app
        .post_expect("/admin/dead-letters/retry", &serde_json::json!({}), 200)
        .await;
    assert_eq!(report["still_parked"], 1, "{report}");
    assert_eq!(app.metric("opd_dead_letters").await, Some(1.0));
    assert!(
        consumer
            .step(10, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );
    app.execute("delete from dead_letters").await;
    assert_eq!(app.metric("opd_dead_letters").await, Some(0.0));
}
