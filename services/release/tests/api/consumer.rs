use std::time::Duration;

use opd_shared::domain::Disposition;
use opd_shared::events::consumer::Outcome;
use opd_testing::stream::publish_meta;
use release::RELEASE_CONSUMER;
use release::events::ReleaseHandler;

use crate::helpers::{PENDING, builder, release_request};

#[tokio::test]
async fn the_same_event_delivered_twice_has_one_effect() {
    let app = builder().without_background_tasks().spawn().await;
    let consumer = app.consumer::<ReleaseHandler>(RELEASE_CONSUMER);
    let request = release_request(200, Disposition::Admission);
    let meta = app.publish(&request).await;
    // The same event under a new Nats-Msg-Id: JetStream stores it, the inbox must catch it.
    publish_meta(&app.settings.nats, &request, &meta).await;

    let outcomes = consumer.step(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(outcomes, [Outcome::Applied, Outcome::Duplicate]);
    let pending = app.get_expect(PENDING, 200).await;
    assert_eq!(pending.as_array().map(Vec::len), Some(1), "{pending}");
    assert_eq!(pending[0]["next_state"], "admission");
    assert_eq!(app.count("select count(*) from release_queue").await, 1);
    app.assert_handled_once(1).await;
}
