use std::time::Duration;

use async_nats::HeaderMap;
use serde_json::json;

use crate::helpers::TestApp;
use inspection::startup::REGISTRATIONS_CONSUMER;
use opd_shared::domain::PatientId;
use opd_shared::events::{EventMeta, PatientRegistered, headers};
use opd_shared::testing::{consumer_backlog, eventually, publish_meta, publish_raw};

#[tokio::test]
async fn the_same_event_delivered_twice_has_one_effect() {
    let app = TestApp::spawn().await;
    let meta = app.registered(200, 1).await;
    app.pending_count(1).await;

    // The same event again, under a new Nats-Msg-Id so that JetStream stores it: only the
    // consumer's own record of handled event ids stands between it and a second visit.
    let event = PatientRegistered {
        id: PatientId::try_from(200).unwrap(),
        token: 1,
    };
    publish_meta(&app.settings.nats, &event, &meta).await;
    app.registered(201, 2).await;
    app.pending_count(2).await;

    assert_eq!(app.count("select count(*) from visits").await, 2);
    assert_eq!(app.count("select count(*) from processed_events").await, 2);
    assert_eq!(app.count("select count(*) from dead_letters").await, 0);
}

#[tokio::test]
async fn poison_messages_are_parked_and_the_events_behind_them_are_handled() {
    let app = TestApp::spawn().await;
    let nats = &app.settings.nats;
    let good_headers = || {
        EventMeta {
            id: uuid::Uuid::now_v7(),
            event_type: "opd.patient.registered.v1".into(),
            source: "/opd/tests".into(),
            time: chrono::Utc::now(),
            request_id: None,
        }
        .to_headers()
    };

    // Not JSON, an invalid patient id, and no metadata at all.
    publish_raw(
        nats,
        "patient.register",
        good_headers(),
        b"{not json".to_vec(),
    )
    .await;
    publish_raw(
        nats,
        "patient.register",
        good_headers(),
        br#"{"id":-1,"token":1}"#.to_vec(),
    )
    .await;
    publish_raw(
        nats,
        "patient.register",
        HeaderMap::new(),
        br#"{"id":5,"token":1}"#.to_vec(),
    )
    .await;
    app.registered(200, 1).await;
    app.registered(300, 2).await;

    let pending = app.pending_count(2).await;
    assert_eq!(
        pending,
        vec![
            json!({"id": 200, "token": 1}),
            json!({"id": 300, "token": 2})
        ]
    );
    let parked: Vec<(String, i64)> =
        eventually(Duration::from_secs(30), "three dead letters", || async {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "select reason, stream_sequence from dead_letters order by stream_sequence",
            )
            .fetch_all(&app.pool)
            .await
            .unwrap();
            (rows.len() == 3).then_some(rows)
        })
        .await;
    assert!(
        parked[0].0.contains("not a valid patient.register"),
        "{parked:?}"
    );
    assert!(parked[1].0.contains("positive integer"), "{parked:?}");
    assert!(parked[2].0.contains(headers::ID), "{parked:?}");
    assert!(parked.iter().all(|(_, sequence)| *sequence > 0));

    // What was received is kept for the operator: headers and payload as they came.
    let headers_kept: i64 = app
        .count("select count(*) from dead_letters where headers ? 'ce-id' and length(payload) > 0")
        .await;
    assert_eq!(headers_kept, 2);
    // Parked messages are acknowledged: nothing is left for the consumer to redeliver.
    eventually(
        Duration::from_secs(30),
        "the consumer to have no backlog",
        || async {
            let backlog = consumer_backlog(&app.settings.nats, REGISTRATIONS_CONSUMER).await;
            (backlog == Some((0, 0))).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn events_arriving_while_the_database_is_down_are_applied_when_it_returns() {
    let app = TestApp::spawn().await;
    app.registered(100, 1).await;
    app.pending_count(1).await;

    app.database.take_offline().await;
    app.registered(200, 2).await;
    app.registered(300, 3).await;
    // Give the consumer time to fail on them at least once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.database.bring_online().await;

    let pending = app.pending_count(3).await;
    assert_eq!(pending.len(), 3);
    assert_eq!(app.count("select count(*) from dead_letters").await, 0);
}

#[tokio::test]
async fn replicas_share_one_durable_consumer_and_each_event_is_handled_once() {
    let app = TestApp::spawn().await;
    // A second replica: same database, same stream, same durable consumer name.
    let second = opd_shared::testing::spawn(inspection::startup::build, app.settings.clone()).await;
    for token in 1..=30 {
        app.registered(1000 + token, token).await;
    }
    let pending = app.pending_count(30).await;
    assert_eq!(pending.len(), 30);
    assert_eq!(
        second
            .get_json("/opd/inspection/pending")
            .await
            .as_array()
            .map(Vec::len),
        Some(30)
    );
    assert_eq!(app.count("select count(*) from processed_events").await, 30);
    eventually(
        Duration::from_secs(30),
        "no backlog on the shared consumer",
        || async {
            let backlog = consumer_backlog(&app.settings.nats, REGISTRATIONS_CONSUMER).await;
            (backlog == Some((0, 0))).then_some(())
        },
    )
    .await;
    second.stop().await;
}
