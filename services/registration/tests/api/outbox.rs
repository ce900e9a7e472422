use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::StorageType;
use opd_testing::{NatsServer, eventually};

use crate::helpers::{
    REGISTER, builder, hold_the_counter, patient, register, spawn_app, started, unpublished,
    until_a_request_waits_on_the_counter,
};

#[tokio::test]
async fn events_written_while_nats_is_down_are_published_when_it_returns() {
    let app = spawn_app().await;
    // Let the relay publish once, so the outage below is one of a running system.
    register(&app, 1).await;
    eventually("the first event to be published", || async {
        (unpublished(&app).await == 0).then_some(())
    })
    .await;

    app.nats.kill_all().await;
    for id in 2..=11 {
        // Registration only needs the database: it keeps working without NATS.
        register(&app, id).await;
    }
    assert_eq!(unpublished(&app).await, 10);

    app.nats.restart_all().await;
    let events = app.events_until("patient.register", 11).await;
    let mut ids: Vec<i64> = events
        .iter()
        .map(|(_, payload)| payload["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=11).collect::<Vec<_>>(), "each event exactly once");
    eventually("the outbox to be drained", || async {
        (unpublished(&app).await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn events_the_cluster_lost_before_flushing_them_are_published_again_on_reconnection() {
    let app = spawn_app().await;
    for id in 1..=3 {
        register(&app, id).await;
    }
    app.events_until("patient.register", 3).await;
    eventually("the events to be stamped published", || async {
        (unpublished(&app).await == 0).then_some(())
    })
    .await;

    // The nodes acknowledged the three events but lose them, stream and all.
    app.nats.lose_everything_and_restart().await;
    // Its owner creates the stream again (no service may); the relay waits for it.
    app.create_stream().await;
    register(&app, 4).await;
    let events = app.events_until("patient.register", 4).await;
    let mut ids: Vec<i64> = events
        .iter()
        .map(|(_, payload)| payload["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3, 4], "the lost events are back, once each");
}

#[tokio::test]
async fn a_row_that_can_never_be_published_does_not_hold_up_the_rows_behind_it() {
    // The production backoff (up to 10 s), not the tests' quick one. A subject this service may
    // not publish is refused without an answer (a permission violation is not tied to the
    // request), so each attempt at the row costs its batch the publish timeout: short here.
    let app = started(builder().settings(|settings| {
        settings.outbox.retry.initial = Duration::from_millis(500);
        settings.outbox.retry.max = Duration::from_secs(10);
        settings.outbox.publish_timeout = Duration::from_millis(500);
    }))
    .await;
    register(&app, 1).await;
    app.events_until("patient.register", 1).await;
    // Outside what this service may publish (and what the stream captures): every publish of
    // it fails.
    app.execute(
        "insert into outbox (id, subject, event_type, source, payload)
         values (gen_random_uuid(), 'nowhere.lost', 'opd.test.v1', 'test', '{}')",
    )
    .await;
    // A commit wakes the relay, which meets the row; then long enough for a relay that backs
    // off as a whole to be sleeping seconds between passes.
    register(&app, 100).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    for id in 2..=4 {
        let started = std::time::Instant::now();
        register(&app, id).await;
        eventually(&format!("patient {id}'s event"), || async {
            let published = app
                .count(&format!(
                    "select count(*) from outbox where published_at is not null \
                     and payload->>'id' = '{id}'"
                ))
                .await;
            (published == 1).then_some(())
        })
        .await;
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "patient {id} waited {:?} behind the failing row",
            started.elapsed()
        );
    }
    let failing = app
        .count("select count(*) from outbox where published_at is null and last_error is not null")
        .await;
    assert_eq!(failing, 1, "the failing row is still there, with its error");
}

#[tokio::test]
async fn a_republished_event_is_dropped_by_jetstream_deduplication() {
    // No relay of its own: the test drives it.
    let app = started(builder().without_background_tasks()).await;
    let relay = app.relay();
    register(&app, 1).await;
    assert_eq!(relay.step().await.unwrap(), 1);
    assert_eq!(app.events("patient.register").await.len(), 1);

    // As if the relay had crashed after the publish but before stamping the row.
    app.execute("update outbox set published_at = null").await;
    assert_eq!(relay.step().await.unwrap(), 1, "published again");
    assert_eq!(unpublished(&app).await, 0);
    assert_eq!(
        app.events("patient.register").await.len(),
        1,
        "JetStream kept one copy"
    );
}

#[tokio::test]
async fn the_relay_is_woken_by_the_commit_not_by_its_polling_tick() {
    // With a one-minute polling tick, only the notification can publish the event in time.
    let app = started(
        builder().settings(|settings| settings.outbox.poll_interval = Duration::from_secs(60)),
    )
    .await;
    // The first pass of the relay creates the stream; wait for it to settle.
    app.stream_info().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    register(&app, 1).await;
    let started = std::time::Instant::now();
    eventually("the event to be published", || async {
        (unpublished(&app).await == 0).then_some(())
    })
    .await;
    // Far below the polling tick: the notification did it.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn events_committed_one_by_one_within_the_linger_go_out_in_one_batch() {
    let app =
        started(builder().settings(|settings| settings.outbox.linger = Duration::from_millis(500)))
            .await;
    app.stream_info().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Ten commits, each waking the relay; the first wake lingers while the rest land.
    let started = std::time::Instant::now();
    for id in 1..=10 {
        register(&app, id).await;
    }
    let registering = started.elapsed();
    eventually("the events to be published", || async {
        (unpublished(&app).await == 0).then_some(())
    })
    .await;
    // One stamp statement per batch, and `now()` is its transaction's time.
    let batches = app
        .count("select count(distinct published_at) from outbox")
        .await;
    if registering < Duration::from_millis(400) {
        assert_eq!(batches, 1, "ten events in {batches} batches");
    } else {
        // A slow machine: the ten commits outlasted the linger.
        assert!(
            batches <= 5,
            "ten events in {batches} batches ({registering:?})"
        );
    }
}

#[tokio::test]
async fn the_stream_is_replicated_on_all_three_nodes() {
    let app = started(builder().cluster()).await;
    register(&app, 1).await;
    let info = app.stream_info().await;
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(info.config.subjects, vec!["patient.>".to_owned()]);
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
    let app = started(
        builder().settings(|settings| settings.outbox.publish_timeout = Duration::from_secs(20)),
    )
    .await;
    app.stream_info().await;
    let second = app.spawn_replica().await;
    for id in 1..=40 {
        // Alternate between the replicas: both relays are woken by every commit.
        let url = if id % 2 == 0 {
            second.url(REGISTER)
        } else {
            app.url(REGISTER)
        };
        let response = app.client.post(url).json(&patient(id)).send().await;
        assert_eq!(response.unwrap().status(), 201);
    }
    eventually("the outbox to be drained", || async {
        (unpublished(&app).await == 0).then_some(())
    })
    .await;
    // Each row was claimed by one relay and published once.
    assert_eq!(
        app.count("select count(*) from outbox where attempts <> 1")
            .await,
        0
    );
    assert_eq!(app.events("patient.register").await.len(), 40);
    second.stop().await;
}

#[tokio::test]
async fn the_relay_keeps_up_under_sustained_load() {
    let app = spawn_app().await;
    app.stream_info().await;
    let until = tokio::time::Instant::now() + Duration::from_secs(8);
    // Eight writers register as fast as they can while a watcher samples how long the oldest
    // unpublished event has waited. A relay that stalls, however briefly, shows up here.
    let writers = futures::future::join_all((0..8_i64).map(|writer| {
        let app = &app;
        async move {
            let mut written = 0;
            while tokio::time::Instant::now() < until {
                register(app, (writer + 1) * 1_000_000 + written).await;
                written += 1;
            }
            written
        }
    }));
    let watcher = async {
        let mut worst_ms = 0;
        while tokio::time::Instant::now() < until {
            let waited = app
                .count(
                    "select coalesce(extract(milliseconds from now() - min(created_at)), 0)::bigint
                     from outbox where published_at is null",
                )
                .await;
            worst_ms = worst_ms.max(waited);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        worst_ms
    };
    let (written, worst_ms) = futures::join!(writers, watcher);
    let written: i64 = written.iter().sum();
    assert!(written > 100, "only {written} registrations in 8 s");
    assert!(
        worst_ms < 3_000,
        "an event waited {worst_ms} ms for the relay while {written} were written"
    );
    eventually("the outbox to be drained", || async {
        (unpublished(&app).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        app.events("patient.register").await.len() as i64,
        written,
        "every event published once"
    );
}

#[tokio::test]
async fn events_committed_by_requests_draining_at_shutdown_are_published_before_it_ends() {
    let mut app = spawn_app().await;
    register(&app, 1).await;
    // Hold today's counter row: the next registration waits on it, in flight.
    let holder = hold_the_counter(&app).await;
    let request = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url(REGISTER));
        async move { client.post(url).json(&patient(2)).send().await.unwrap() }
    });
    until_a_request_waits_on_the_counter(&app).await;

    // Shutdown begins while the request is in flight; it commits its event during the drain.
    let release = async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        holder.commit().await.unwrap();
    };
    tokio::join!(app.stop(), release);

    assert_eq!(request.await.unwrap().status(), 201);
    assert_eq!(
        unpublished(&app).await,
        0,
        "the relay published it before stopping"
    );
    assert_eq!(app.events("patient.register").await.len(), 2);
}

#[tokio::test]
async fn a_stream_the_operator_configured_is_used_as_it_is_and_never_rewritten() {
    let nats = Arc::new(NatsServer::single().await);
    // The operator's stream: in memory (a setting no update may change), kept for an hour, and
    // as large as a node's memory store allows.
    let mut config = opd_testing::stream::StreamSettings::default().config("PATIENT");
    config.storage = StorageType::Memory;
    config.max_age = Duration::from_secs(3600);
    config.max_bytes = 64 * 1024 * 1024;
    config.num_replicas = 1;
    opd_testing::stream::jetstream(&nats.admin_settings())
        .await
        .unwrap()
        .create_stream(config)
        .await
        .unwrap();

    let app = started(builder().nats(nats)).await;
    register(&app, 1).await;
    // The relay is not blocked by the difference...
    app.events_until("patient.register", 1).await;
    // ...and left the operator's settings alone.
    let live = app.stream_info().await.config;
    assert_eq!(live.storage, StorageType::Memory);
    assert_eq!(live.max_age, Duration::from_secs(3600));
}

#[tokio::test]
async fn a_full_stream_refuses_new_events_which_wait_in_the_outbox_until_there_is_room() {
    // Room for a few events only.
    let app = started(builder().stream_settings(|owned| owned.max_bytes = 2048)).await;
    for id in 1..=20 {
        // Registration only needs the database: a full stream costs it nothing.
        register(&app, id).await;
    }
    let held = eventually("the stream to fill up and the rest to wait", || async {
        let stored = app.stream_info().await.state.messages;
        let waiting = unpublished(&app).await;
        (stored > 0 && waiting > 0 && stored + u64::try_from(waiting).unwrap() == 20)
            .then_some(stored)
    })
    .await;
    // Still full a moment later: the oldest were not dropped to make room.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.stream_info().await.state.messages, held);
    assert_eq!(app.get("/readyz").await.status(), 200);

    // The owner makes room; every event arrives, each once.
    let js = opd_testing::stream::jetstream(&app.settings.nats)
        .await
        .unwrap();
    let mut config = app.stream_info().await.config;
    config.max_bytes = 1024 * 1024;
    js.update_stream(&config).await.unwrap();
    let events = app.events_until("patient.register", 20).await;
    let mut ids: Vec<i64> = events
        .iter()
        .map(|(_, payload)| payload["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=20).collect::<Vec<_>>());
    eventually("the outbox to be drained", || async {
        (unpublished(&app).await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_relay_publishes_while_requests_hold_every_connection_of_the_pool() {
    // No relay of its own: the test drives it. A short acquire timeout, so that a relay that
    // queued behind the requests would fail the step rather than wait.
    let app = started(builder().without_background_tasks().settings(|settings| {
        settings.database.max_connections = 2;
        settings.database.acquire_timeout = Duration::from_millis(300);
    }))
    .await;
    register(&app, 1).await;
    // Requests hold every connection of the service's pool.
    let pool = &app.infra().pool;
    let held = [pool.acquire().await.unwrap(), pool.acquire().await.unwrap()];
    assert!(
        pool.try_acquire().is_none(),
        "the pool has a free connection"
    );
    assert_eq!(app.relay().step().await.unwrap(), 1, "the relay published");
    drop(held);
    assert_eq!(unpublished(&app).await, 0);
}

#[tokio::test]
async fn the_relays_bookkeeping_commits_without_waiting_for_the_disk_and_requests_do_wait() {
    let app = spawn_app().await;
    let setting = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, String>("show synchronous_commit")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(setting(app.infra().relay_pool.clone()).await, "off");
    assert_eq!(setting(app.infra().pool.clone()).await, "on");
}

/// How PostgreSQL would run the relay's stamp on `pool`'s connection after the outbox grew:
/// prepared, and run a few times, while the table was empty (as a relay does from its start).
async fn stamp_plan_after_the_outbox_grew(
    app: &opd_testing::TestApp,
    pool: &sqlx::PgPool,
) -> String {
    use sqlx::Row;
    // A few rows, as statistics know them: a table of one page, where reading it whole is
    // cheapest.
    app.execute(
        "truncate outbox;
         insert into outbox (id, subject, event_type, source, payload, published_at)
         select gen_random_uuid(), 'patient.register', 't', 's', '{}', now()
         from generate_series(1, 10);
         analyze outbox",
    )
    .await;
    let mut connection = pool.acquire().await.unwrap();
    sqlx::raw_sql(
        "prepare stamp (uuid[]) as
             update outbox set published_at = now(), claimed_until = null where id = any($1)",
    )
    .execute(&mut *connection)
    .await
    .unwrap();
    // More runs than PostgreSQL's five before it may settle on a cached, generic plan.
    for _ in 0..8 {
        sqlx::raw_sql("execute stamp('{00000000-0000-7000-8000-000000000000}')")
            .execute(&mut *connection)
            .await
            .unwrap();
    }
    app.execute(
        "insert into outbox (id, subject, event_type, source, payload, published_at)
         select gen_random_uuid(), 'patient.register', 't', 's', '{}', now()
         from generate_series(1, 20000)",
    )
    .await;
    let ids: String = sqlx::query_scalar(
        "select string_agg(id::text, ',') from (select id from outbox limit 10) sample",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let plan = sqlx::raw_sql(&format!("explain execute stamp('{{{ids}}}')"))
        .fetch_all(&mut *connection)
        .await
        .unwrap();
    sqlx::raw_sql("deallocate stamp")
        .execute(&mut *connection)
        .await
        .unwrap();
    app.execute("truncate outbox").await;
    plan.iter()
        .map(|row| row.get::<String, _>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_relays_statements_are_planned_for_the_outbox_as_it_is_not_as_it_was() {
    let app = started(builder().without_background_tasks()).await;
    // No automatic ANALYZE in the middle, which would make every connection plan again (the
    // growth below is what the statistics do not know yet).
    app.execute("alter table outbox set (autovacuum_enabled = false)")
        .await;
    // A request's connection keeps the plan it made for an empty table: a scan of every row.
    let cached = stamp_plan_after_the_outbox_grew(&app, &app.pool).await;
    assert!(cached.contains("Seq Scan on outbox"), "{cached}");
    // The relay's plans each run afresh, and look up the rows it stamps by their key.
    let relay = stamp_plan_after_the_outbox_grew(&app, &app.infra().relay_pool).await;
    assert!(!relay.contains("Seq Scan"), "{relay}");
    assert!(relay.contains("outbox_pkey"), "{relay}");
}
