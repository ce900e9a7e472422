use std::time::Duration;

use opd_shared::events::consumer::Outcome;
use opd_testing::stream::publish_meta;
use serde_json::json;
use treatment::TREATMENT_CONSUMER;
use treatment::events::TreatmentHandler;

use crate::helpers::{PENDING, builder, sent};

#[tokio::test]
async fn the_same_event_delivered_twice_has_one_effect() {
    let app = builder().without_background_tasks().spawn().await;
    let consumer = app.consumer::<TreatmentHandler>(TREATMENT_CONSUMER);
    let meta = app.publish(&sent(200)).await;
    // The same event under a new Nats-Msg-Id: JetStream stores it, the inbox must catch it.
    publish_meta(&app.settings.nats, &sent(200), &meta).await;

    let outcomes = consumer.step(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(outcomes, [Outcome::Applied, Outcome::Duplicate]);
    assert_eq!(
        app.get_expect(PENDING, 200).await,
        json!([{"id": 200, "medication": "XYZ x 3"}])
    );
    assert_eq!(app.count("select count(*) from treatment_queue").await, 1);
    app.assert_handled_once(1).await;
}
