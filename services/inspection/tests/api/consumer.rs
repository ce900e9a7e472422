use std::time::Duration;

use async_nats::HeaderMap;
use futures::StreamExt;
use inspection::REGISTRATIONS_CONSUMER;
use inspection::events::RegistrationHandler;
use opd_shared::events::consumer::Outcome;
use opd_shared::events::{PatientRegistered, headers};
use opd_testing::stream::{new_meta, publish_meta, publish_raw};
use serde_json::json;

use crate::helpers::{builder, pending_count, registered, registration, spawn_app};

/// Long enough for every message a test published to be fetched in one step.
const STEP_WAIT: Duration = Duration::from_secs(1);

#[tokio::test]
async fn the_same_event_delivered_twice_has_one_effect() {
    let app = builder().without_background_tasks().spawn().await;
    let consumer = app.consumer::<RegistrationHandler>(REGISTRATIONS_CONSUMER);
    let meta = registered(&app, 200, 1).await;
    // The same event again, under a new Nats-Msg-Id so that JetStream stores it: only the
    // consumer's own record of handled event ids stands between it and a second visit.
    publish_meta(&app.settings.nats, &registration(200, 1), &meta).await;
    registered(&app, 201, 2).await;

    let outcomes = consumer.step(10, STEP_WAIT).await.unwrap();
    assert_eq!(
        outcomes,
        [Outcome::Applied, Outcome::Duplicate, Outcome::Applied]
    );
    assert_eq!(app.count("select count(*) from visits").await, 2);
    app.assert_handled_once(2).await;
}

#[tokio::test]
async fn poison_messages_are_parked_and_the_events_behind_them_are_handled() {
    let app = builder().without_background_tasks().spawn().await;
    let consumer = app.consumer::<RegistrationHandler>(REGISTRATIONS_CONSUMER);
    let nats = &app.settings.nats;
    let good_headers = || new_meta::<PatientRegistered>().to_headers();
    // Not JSON, an invalid patient id, and no metadata at all.
    for (headers, payload) in [
        (good_headers(), &b"{not json"[..]),
        (good_headers(), br#"{"id":-1,"token":1}"#),
        (HeaderMap::new(), br#"{"id":5,"token":1}"#),
    ] {
        publish_raw(nats, "patient.register", headers, payload.to_vec()).await;
    }
    registered(&app, 200, 1).await;
    registered(&app, 300, 2).await;

    let outcomes = consumer.step(10, STEP_WAIT).await.unwrap();
    let parked: Vec<&str> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Outcome::Parked(reason) => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(parked.len(), 3, "{outcomes:?}");
    assert!(
        parked[0].contains("not a valid patient.register"),
        "{parked:?}"
    );
    assert!(parked[1].contains("positive integer"), "{parked:?}");
    assert!(parked[2].contains(headers::ID), "{parked:?}");
    assert_eq!(outcomes[3..], [Outcome::Applied, Outcome::Applied]);
    assert_eq!(
        app.get_expect("/opd/inspection/pending", 200).await,
        json!([{"id": 200, "token": 1, "site": "hospital"}, {"id": 300, "token": 2, "site": "hospital"}])
    );

    // What was received is kept for the operator: headers and payload as they came.
    assert_eq!(app.count("select count(*) from dead_letters").await, 3);
    assert_eq!(
        app.count(
            "select count(*) from dead_letters where headers ? 'ce-id' and length(payload) > 0"
        )
        .await,
        2
    );
    // Parked messages are acknowledged: nothing is left for the consumer to redeliver.
    app.caught_up(REGISTRATIONS_CONSUMER).await;
    assert_eq!(consumer.step(10, STEP_WAIT).await.unwrap(), []);
}

#[tokio::test]
async fn a_token_given_twice_is_parked_and_the_rest_of_its_batch_is_applied() {
    let app = builder().without_background_tasks().spawn().await;
    let consumer = app.consumer::<RegistrationHandler>(REGISTRATIONS_CONSUMER);
    registered(&app, 200, 1).await;
    registered(&app, 201, 2).await;
    // Token 1 again, the same day at the same site, in the same batch as the first.
    registered(&app, 300, 1).await;
    registered(&app, 301, 3).await;

    let outcomes = consumer.step(10, STEP_WAIT).await.unwrap();
    assert!(
        matches!(&outcomes[..], [Outcome::Applied, Outcome::Applied, Outcome::Parked(reason), Outcome::Applied]
            if reason.contains("token 1 of") && reason.contains("already given to another visit")),
        "{outcomes:?}"
    );
    // Token 2 again, in a later batch: the visit that holds it was committed before.
    registered(&app, 400, 2).await;
    let outcomes = consumer.step(10, STEP_WAIT).await.unwrap();
    assert!(
        matches!(&outcomes[..], [Outcome::Parked(reason)] if reason.contains("token 2 of")),
        "{outcomes:?}"
    );

    assert_eq!(
        app.get_expect("/opd/inspection/pending", 200).await,
        json!([
            {"id": 200, "token": 1, "site": "hospital"},
            {"id": 201, "token": 2, "site": "hospital"},
            {"id": 301, "token": 3, "site": "hospital"}
        ])
    );
    assert_eq!(app.count("select count(*) from dead_letters").await, 2);
    assert_eq!(app.count("select count(*) from processed_events").await, 3);
    app.caught_up(REGISTRATIONS_CONSUMER).await;
}

#[tokio::test]
async fn events_arriving_while_the_database_is_down_are_applied_when_it_returns() {
    let app = spawn_app().await;
    registered(&app, 100, 1).await;
    pending_count(&app, 1).await;

    app.database.take_offline().await;
    registered(&app, 200, 2).await;
    registered(&app, 300, 3).await;
    // Give the consumer time to fail on them at least once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.database.bring_online().await;

    assert_eq!(pending_count(&app, 3).await.len(), 3);
    app.assert_handled_once(3).await;
}

#[tokio::test]
async fn replicas_share_one_durable_consumer_and_each_event_is_handled_once() {
    let app = spawn_app().await;
    // A second replica: same database, same stream, same durable consumer name.
    let second = app.spawn_replica().await;
    for token in 1..=30 {
        registered(&app, 1000 + token, token).await;
    }
    assert_eq!(pending_count(&app, 30).await.len(), 30);
    let from_second: Vec<serde_json::Value> = app
        .client
        .get(second.url("/opd/inspection/pending"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(from_second.len(), 30);
    app.caught_up(REGISTRATIONS_CONSUMER).await;
    app.assert_handled_once(30).await;
    second.stop().await;
}

/// A consumer whose failed messages come back after 10 ms, and are parked after three
/// deliveries.
fn quick_retries() -> opd_testing::TestAppBuilder {
    builder().without_background_tasks().settings(|settings| {
        settings.consumer.retry.initial = Duration::from_millis(10);
        settings.consumer.retry.max = Duration::from_millis(10);
        settings.consumer.max_deliveries = 3;
    })
}

/// Steps the consumer until it has handled a message (a redelivery comes after its delay).
async fn next_outcome(
    consumer: &opd_shared::events::consumer::Consumer<RegistrationHandler>,
) -> Vec<Outcome> {
    for _ in 0..50 {
        let outcomes = consumer.step(10, STEP_WAIT).await.unwrap();
        if !outcomes.is_empty() {
            return outcomes;
        }
    }
    panic!("no message came back");
}

#[tokio::test]
async fn an_unforeseen_database_error_is_retried_not_parked() {
    let app = quick_retries().spawn().await;
    let consumer = app.consumer::<RegistrationHandler>(REGISTRATIONS_CONSUMER);
    registered(&app, 200, 1).await;
    // A rolling deploy gone wrong: the table the handler writes to is not there (42P01, an
    // error on no list of passing failures).
    app.execute("alter table visits rename to visits_elsewhere")
        .await;
    let outcomes = next_outcome(&consumer).await;
    assert!(matches!(&outcomes[..], [Outcome::Retry(_)]), "{outcomes:?}");
    assert_eq!(app.count("select count(*) from dead_letters").await, 0);

    app.execute("alter table visits_elsewhere rename to visits")
        .await;
    assert_eq!(next_outcome(&consumer).await, [Outcome::Applied]);
    app.assert_handled_once(1).await;
}

#[tokio::test]
async fn an_event_that_fails_on_every_delivery_is_parked_after_the_last_and_does_not_block() {
    let app = quick_retries().spawn().await;
    let consumer = app.consumer::<RegistrationHandler>(REGISTRATIONS_CONSUMER);
    registered(&app, 200, 1).await;
    app.execute("alter table visits rename to visits_elsewhere")
        .await;
    let mut outcomes = Vec::new();
    while !matches!(outcomes.last(), Some(Outcome::Parked(_))) {
        outcomes.extend(next_outcome(&consumer).await);
        assert!(outcomes.len() <= 3, "{outcomes:?}");
    }
    assert!(
        matches!(&outcomes[..], [Outcome::Retry(_), Outcome::Retry(_), Outcome::Parked(reason)]
            if reason.starts_with("gave up after 3 deliveries")),
        "{outcomes:?}"
    );
    assert_eq!(
        app.count("select count(*) from dead_letters where reason like 'gave up after 3 %'")
            .await,
        1
    );

    // The cause fixed, the events behind it flow again.
    app.execute("alter table visits_elsewhere rename to visits")
        .await;
    registered(&app, 300, 2).await;
    assert_eq!(next_outcome(&consumer).await, [Outcome::Applied]);
    // Handled: the second event only; parked: the first, once.
    assert_eq!(app.count("select count(*) from processed_events").await, 1);
    assert_eq!(app.count("select count(*) from dead_letters").await, 1);
}

#[tokio::test]
async fn a_durable_consumer_the_operator_tuned_is_used_as_it_is() {
    let nats = std::sync::Arc::new(opd_testing::NatsServer::single().await);
    let app = builder()
        .nats(nats)
        .without_background_tasks()
        .spawn()
        .await;
    registered(&app, 200, 1).await;
    // The operator gave the consumer a longer ack_wait than the service's setting.
    let js = opd_testing::stream::jetstream(&app.settings.nats)
        .await
        .unwrap();
    let stream = js.get_stream(&app.settings.nats.stream).await.unwrap();
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some(REGISTRATIONS_CONSUMER.into()),
            filter_subject: "patient.register".into(),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(120),
            max_deliver: -1,
            ..Default::default()
        })
        .await
        .unwrap();

    let consumer = app.consumer::<RegistrationHandler>(REGISTRATIONS_CONSUMER);
    assert_eq!(
        consumer.step(10, STEP_WAIT).await.unwrap(),
        [Outcome::Applied]
    );
    let mut live = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(REGISTRATIONS_CONSUMER)
        .await
        .unwrap();
    assert_eq!(
        live.info().await.unwrap().config.ack_wait,
        Duration::from_secs(120)
    );
    app.assert_handled_once(1).await;
}

#[tokio::test]
async fn a_batch_that_takes_longer_than_ack_wait_is_not_redelivered_meanwhile() {
    let app = builder()
        .without_background_tasks()
        .ack_wait(Duration::from_secs(1))
        .spawn()
        .await;
    let consumer = app.consumer::<RegistrationHandler>(REGISTRATIONS_CONSUMER);
    registered(&app, 200, 1).await;
    // A slow database: the handler waits three ack_waits for the table it writes to.
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("lock table visits in access exclusive mode")
        .execute(&mut *holder)
        .await
        .unwrap();
    let handling = async { consumer.step(10, STEP_WAIT).await.unwrap() };
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Another replica asks for work while the first still has the message in hand.
        let js = opd_testing::stream::jetstream(&app.settings.nats)
            .await
            .unwrap();
        let other = js
            .get_stream(&app.settings.nats.stream)
            .await
            .unwrap()
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(REGISTRATIONS_CONSUMER)
            .await
            .unwrap();
        let mut fetched = other
            .fetch()
            .max_messages(1)
            .expires(Duration::from_millis(1500))
            .messages()
            .await
            .unwrap();
        let mut redelivered = 0;
        while let Some(message) = fetched.next().await {
            message.unwrap();
            redelivered += 1;
        }
        holder.commit().await.unwrap();
        redelivered
    };
    let (outcomes, redelivered) = tokio::join!(handling, meanwhile);
    assert_eq!(
        redelivered, 0,
        "the message was redelivered while still in hand"
    );
    assert_eq!(outcomes, [Outcome::Applied]);
    app.assert_handled_once(1).await;
}

#[tokio::test]
async fn after_the_whole_cluster_was_down_the_consumer_binds_again_and_health_says_so_meanwhile() {
    let app = spawn_app().await;
    let consumer_is = |expected: &'static str| {
        let app = &app;
        async move {
            opd_testing::eventually(
                &format!("/readyz to report the consumer {expected}"),
                || async {
                    let answer = app.get("/readyz").await;
                    // Ready all the while: the database is up.
                    assert_eq!(answer.status(), 200);
                    let body: serde_json::Value = answer.json().await.ok()?;
                    (body["consumers"][REGISTRATIONS_CONSUMER] == expected).then_some(())
                },
            )
            .await;
        }
    };
    consumer_is("consuming").await;

    app.nats.kill_all().await;
    consumer_is("binding").await;

    app.nats.restart_all().await;
    consumer_is("consuming").await;
    registered(&app, 200, 1).await;
    pending_count(&app, 1).await;
    app.assert_handled_once(1).await;
}
