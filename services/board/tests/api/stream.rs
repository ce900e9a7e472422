use std::time::Duration;

use futures::StreamExt;
use opd_testing::{TestApp, eventually, expect_problem};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_stream_opens_with_a_snapshot_then_sends_each_change() {
    let app = board().await;
    register(&app, 200, 1).await;
    board_shows(&app, expect((&[1], None), (&[], None), (&[], None))).await;

    let mut events = Events::open(&app, None).await;
    let snapshot = events.next().await;
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(
        without_orders(&snapshot.data["stages"]),
        expect((&[1], None), (&[], None), (&[], None))
    );
    let opened_at = snapshot.id.unwrap();
    assert_eq!(snapshot.data["revision"], opened_at);

    register(&app, 201, 2).await;
    let joined = events.next().await;
    assert_eq!(
        (joined.event.as_str(), &joined.data),
        ("visit", &json!({"token": 2, "stage": "inspection"}))
    );
    assert!(joined.id.unwrap() > opened_at);
    assert!(
        joined.order.unwrap() > snapshot.data["stages"][0]["orders"][0].as_u64().unwrap(),
        "token 2 joined after token 1"
    );

    inspect(&app, 200).await;
    let mut seen = [events.next().await, events.next().await];
    seen.sort_by_key(|event| event.event.clone());
    assert_eq!(
        seen.iter()
            .map(|event| (event.event.as_str(), event.data.clone()))
            .collect::<Vec<_>>(),
        [
            ("called", json!({"stage": "inspection", "token": 1})),
            ("visit", json!({"token": 1, "stage": "treatment"})),
        ]
    );
    // Nothing else: each change once.
    assert_eq!(events.quiet_for(Duration::from_secs(1)).await, None);
}

#[tokio::test]
async fn a_screen_that_reconnects_is_sent_exactly_what_it_missed_even_by_a_restarted_board() {
    let mut app = board().await;
    register(&app, 300, 1).await;
    board_shows(&app, expect((&[1], None), (&[], None), (&[], None))).await;
    let last_seen = {
        let mut events = Events::open(&app, None).await;
        events.next().await.id.unwrap()
    };
    // While the screen is away: two arrivals and a call, and the board restarts.
    register(&app, 301, 2).await;
    register(&app, 302, 3).await;
    inspect(&app, 300).await;
    board_shows(&app, expect((&[2, 3], Some(1)), (&[1], None), (&[], None))).await;
    app.restart().await;

    let mut events = Events::open(&app, Some(last_seen)).await;
    let mut missed = Vec::new();
    for _ in 0..4 {
        let event = events.next().await;
        assert!(event.id.unwrap() > last_seen, "{event:?}");
        missed.push((event.event, event.data));
    }
    let mut expected: Vec<(String, serde_json::Value)> = vec![
        ("called".into(), json!({"stage": "inspection", "token": 1})),
        ("visit".into(), json!({"token": 1, "stage": "treatment"})),
        ("visit".into(), json!({"token": 2, "stage": "inspection"})),
        ("visit".into(), json!({"token": 3, "stage": "inspection"})),
    ];
    for list in [&mut missed, &mut expected] {
        list.sort_by_key(|(name, data)| (name.clone(), data.to_string()));
    }
    assert_eq!(missed, expected);
    assert_eq!(events.quiet_for(Duration::from_secs(1)).await, None);
    // And it goes on live.
    register(&app, 303, 4).await;
    assert_eq!(
        events.next().await.data,
        json!({"token": 4, "stage": "inspection"})
    );
}

#[tokio::test]
async fn an_id_the_board_cannot_place_gets_a_fresh_snapshot() {
    let app = board().await;
    register(&app, 400, 1).await;
    board_shows(&app, expect((&[1], None), (&[], None), (&[], None))).await;
    // From another board (the bucket made anew), or garbage.
    for id in ["999999", "yesterday"] {
        let response = app
            .client
            .get(app.url("/opd/board/events"))
            .header("Last-Event-ID", id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut events = Events::open(&app, id.parse().ok()).await;
        assert_eq!(events.next().await.event, "snapshot", "Last-Event-ID {id}");
        drop(response);
    }
}

#[tokio::test]
async fn streams_beyond_the_cap_are_refused_with_retry_after() {
    let app = TestApp::builder(&board::SERVICE)
        .settings(|settings| settings.board.max_streams = 2)
        .spawn()
        .await;
    let _first = Events::open(&app, None).await;
    let _second = Events::open(&app, None).await;
    let refused = app.get("/opd/board/events").await;
    assert!(refused.headers().contains_key("retry-after"));
    let problem = expect_problem(refused, 503).await;
    assert_eq!(problem["type"], "/problems/too-many-streams");
    drop(_first);
    eventually("a place to free up", || async {
        (app.get("/opd/board/events").await.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn open_streams_end_when_the_board_stops() {
    let mut app = board().await;
    let mut events = Events::open(&app, None).await;
    assert_eq!(events.next().await.event, "snapshot");
    let started = std::time::Instant::now();
    app.stop().await;
    assert_eq!(events.quiet_for(Duration::from_secs(5)).await, None);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopping took {:?}: the open stream held it up",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_service_under_a_strict_policy() {
    let app = board().await;
    for (path, content_type) in [
        ("/opd/board/screen", "text/html; charset=utf-8"),
        ("/opd/board/screen.js", "text/javascript; charset=utf-8"),
        ("/opd/board/screen.css", "text/css; charset=utf-8"),
    ] {
        let response = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'"), "{policy}");
        assert!(policy.contains("connect-src 'self'"), "{policy}");
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} fetches from elsewhere"
        );
    }
}

#[tokio::test]
async fn the_board_keeps_following_its_bucket_after_nats_restarts() {
    // A server killed with its consumer's last acknowledgements not yet on disk delivers those
    // messages again after ack_wait: short here, so that the redelivery is seen to change
    // nothing.
    let app = TestApp::builder(&board::SERVICE)
        .ack_wait(Duration::from_secs(3))
        .spawn()
        .await;
    register(&app, 500, 1).await;
    board_shows(&app, expect((&[1], None), (&[], None), (&[], None))).await;
    let mut events = Events::open(&app, None).await;
    assert_eq!(events.next().await.event, "snapshot");

    app.nats.restart_all().await;
    app.nats.wait_until_healthy().await;
    register(&app, 501, 2).await;
    board_shows(&app, expect((&[1, 2], None), (&[], None), (&[], None))).await;
    // The open stream carried on too (or its browser reconnects: either way token 2 arrives).
    assert_eq!(
        events.next().await.data,
        json!({"token": 2, "stage": "inspection"})
    );
}

#[tokio::test]
async fn the_board_shows_tokens_and_never_who_holds_them() {
    let app = board().await;
    // Ids that no token, revision or day could spell by chance.
    register(&app, 987_654_321, 1).await;
    register(&app, 918_273_645, 2).await;
    inspect(&app, 987_654_321).await;
    board_shows(&app, expect((&[2], Some(1)), (&[1], None), (&[], None))).await;
    let state = app.get("/opd/board/state").await.text().await.unwrap();
    let mut events = Events::open(&app, Some(0)).await;
    let mut streamed = String::new();
    while let Some(event) = events.quiet_for(Duration::from_millis(500)).await {
        streamed.push_str(&event.data.to_string());
    }
    assert!(streamed.contains("\"token\":2"), "{streamed}");
    for shown in [&state, &streamed] {
        for id in ["987654321", "918273645"] {
            assert!(!shown.contains(id), "a patient id on the board: {shown}");
        }
    }
}

#[tokio::test]
async fn keys_the_board_cannot_read_show_nothing_and_do_not_hold_it_behind() {
    let app = board().await;
    register(&app, 600, 1).await;
    board_shows(&app, expect((&[1], None), (&[], None), (&[], None))).await;
    // Keys a newer version of the projection might write: one the board cannot place, and a
    // value it cannot read.
    let bucket = board_bucket(&app).await;
    bucket.put("visit.601", "not json".into()).await.unwrap();
    let revision = bucket.put("visit.six-hundred", "{}".into()).await.unwrap();

    // The board counts the revisions as seen (its stall check compares them with the
    // bucket's), and shows the same board.
    eventually("the board to reach the revision of the keys", || async {
        let state = app.get_expect("/opd/board/state", 200).await;
        (state["revision"] == revision).then_some(())
    })
    .await;
    assert_eq!(
        stages(&app).await,
        expect((&[1], None), (&[], None), (&[], None))
    );
}

#[tokio::test]
async fn a_board_rebuilt_in_a_bucket_made_anew_replaces_what_the_screens_showed() {
    let app = board().await;
    register(&app, 850, 1).await;
    register(&app, 851, 2).await;
    board_shows(&app, expect((&[1, 2], None), (&[], None), (&[], None))).await;
    let old = app.get_expect("/opd/board/state", 200).await["revision"]
        .as_u64()
        .unwrap();
    let mut screen = Events::open(&app, None).await;
    assert_eq!(screen.next().await.event, "snapshot");

    // The operator rebuilds the board: deletes the bucket, and the owner makes it again, where
    // patient 850's visit is written anew (token 9), at revisions the old bucket had used.
    let admin = opd_testing::stream::jetstream(&app.settings.nats)
        .await
        .unwrap();
    admin
        .delete_key_value(opd_shared::events::BOARD_BUCKET)
        .await
        .unwrap();
    app.create_stream().await;
    let bucket = board_bucket(&app).await;
    let rebuilt = json!({"registered": 50, "day": chrono::Utc::now().date_naive(), "token": 9,
                         "left": [0, 0, 0]});
    bucket
        .put("visit.850", rebuilt.to_string().into())
        .await
        .unwrap();
    let mut revision = 1;
    while revision <= old {
        // Keys the board does not read, to take the new bucket past the old one's revisions.
        revision = bucket.put("visit.filler", "{}".into()).await.unwrap();
    }

    board_shows(&app, expect((&[9], None), (&[], None), (&[], None))).await;
    // The open stream was sent the board anew ...
    let mut sent = screen.next().await;
    while sent.event != "snapshot" {
        sent = screen.next().await;
    }
    // ... and a screen that comes back with a revision of the old bucket, which the new one
    // has passed, is sent a snapshot rather than the new bucket's changes after it.
    let mut back = Events::open(&app, Some(old)).await;
    assert_eq!(back.next().await.event, "snapshot");
}

#[tokio::test]
async fn the_board_pulls_its_bucket_rather_than_being_sent_it() {
    // A pushed watch is sent up to the server's flow-control window (32 MiB) ahead of what the
    // board has read: a board starting on a day's bucket held that at once. Pulled, it holds a
    // batch.
    let app = board().await;
    register(&app, 700, 1).await;
    board_shows(&app, expect((&[1], None), (&[], None), (&[], None))).await;
    let jetstream = opd_testing::stream::jetstream(&app.settings.nats)
        .await
        .unwrap();
    let bucket = jetstream
        .get_stream(format!("KV_{}", opd_shared::events::BOARD_BUCKET))
        .await
        .unwrap();
    let watches: Vec<_> = bucket
        .consumers()
        .map(|consumer| consumer.unwrap().config)
        .collect()
        .await;
    assert!(!watches.is_empty(), "the board watches its bucket");
    for watch in watches {
        assert_eq!(watch.deliver_subject, None, "a pushed watch: {watch:?}");
    }
}
