use std::time::Duration;

use crate::helpers::{TestApp, patient};
use opd_shared::testing::eventually;

#[tokio::test]
async fn events_written_while_nats_is_down_are_published_when_it_returns() {
    let mut app = TestApp::spawn().await;
    // Let the relay publish once, so the outage below is one of a running system.
    assert_eq!(app.register(&patient(1)).await.status(), 201);
    eventually(
        Duration::from_secs(30),
        "the first event to be published",
        || async { (unpublished(&app).await == 0).then_some(()) },
    )
    .await;

    app.nats().kill_all();
    for id in 2..=11 {
        // Registration only needs the database: it keeps working without NATS.
        assert_eq!(app.register(&patient(id)).await.status(), 201);
    }
    assert_eq!(unpublished(&app).await, 10);

    app.nats().restart_all().await;
    let events = eventually(Duration::from_secs(30), "all eleven events", || async {
        let events = app.register_events().await;
        (events.len() >= 11).then_some(events)
    })
    .await;
    let mut ids: Vec<i64> = events
        .iter()
        .map(|(_, payload)| payload["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=11).collect::<Vec<_>>(), "each event exactly once");
    eventually(
        Duration::from_secs(30),
        "the outbox to be drained",
        || async { (unpublished(&app).await == 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_republished_event_is_dropped_by_jetstream_deduplication() {
    let app = TestApp::spawn().await;
    assert_eq!(app.register(&patient(1)).await.status(), 201);
    eventually(Duration::from_secs(30), "the event", || async {
        (app.register_events().await.len() == 1).then_some(())
    })
    .await;
    // As if the relay had crashed after the publish but before stamping the row.
    sqlx::query("update outbox set published_at = null")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("select pg_notify('opd_outbox', '')")
        .execute(&app.pool)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the row to be stamped again",
        || async { (unpublished(&app).await == 0).then_some(()) },
    )
    .await;
    assert_eq!(app.register_events().await.len(), 1);
}

async fn unpublished(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from outbox where published_at is null")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_relay_is_woken_by_the_commit_not_by_its_polling_tick() {
    // With a one-minute polling tick, only the notification can publish the event in time.
    let app = TestApp::spawn_with(|settings| settings.outbox.poll_interval_ms = 60_000).await;
    // The first pass of the relay creates the stream; wait for it to settle.
    eventually(Duration::from_secs(30), "the stream", || async {
        app.stream_info().await.map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(app.register(&patient(1)).await.status(), 201);
    let started = std::time::Instant::now();
    eventually(
        Duration::from_secs(30),
        "the event within seconds",
        || async { (unpublished(&app).await == 0).then_some(()) },
    )
    .await;
    // Far below the polling tick: the notification did it.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_stream_is_replicated_on_all_three_nodes() {
    let app = TestApp::spawn().await;
    assert_eq!(app.register(&patient(1)).await.status(), 201);
    // A new replicated stream elects its leader a moment after it is created.
    let info = eventually(
        Duration::from_secs(30),
        "a stream with an elected leader",
        || async {
            app.stream_info()
                .await
                .filter(|info| info.cluster.as_ref().is_some_and(|c| c.leader.is_some()))
        },
    )
    .await;
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(
        info.config.subjects,
        vec![format!("{}patient.>", app.settings.nats.subject_prefix)]
    );
    assert_eq!(
        info.config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    let cluster = info.cluster.expect("a clustered stream");
    assert_eq!(cluster.replicas.len(), 2, "a leader and two followers");
}

#[tokio::test]
async fn two_replicas_relay_side_by_side_without_publishing_a_row_twice() {
    // A long publish timeout, so that a slow acknowledgement under load is not a retry.
    let app = TestApp::spawn_with(|settings| settings.outbox.publish_timeout_ms = 20_000).await;
    eventually(
        Duration::from_secs(30),
        "a stream with an elected leader",
        || async {
            app.stream_info()
                .await
                .filter(|info| info.cluster.as_ref().is_some_and(|c| c.leader.is_some()))
        },
    )
    .await;
    let second =
        opd_shared::testing::spawn(registration::startup::build, app.settings.clone()).await;
    for id in 1..=40 {
        // Alternate between the replicas: both relays are woken by every commit.
        let replica = if id % 2 == 0 { &second } else { &**app };
        assert_eq!(
            replica
                .post("/opd/patient/register", &patient(id))
                .await
                .status(),
            201
        );
    }
    eventually(
        Duration::from_secs(30),
        "the outbox to be drained",
        || async { (unpublished(&app).await == 0).then_some(()) },
    )
    .await;
    // Each row was claimed by one relay and published once.
    assert_eq!(
        app.count("select count(*) from outbox where attempts <> 1")
            .await,
        0
    );
    assert_eq!(app.register_events().await.len(), 40);
    second.stop().await;
}
