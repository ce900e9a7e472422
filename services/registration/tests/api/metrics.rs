use crate::helpers::{REGISTER, builder, register, started};

const REGISTERED: &str =
    r#"opd_http_requests_total{method="POST",route="/opd/patient/register",status="201"}"#;

#[tokio::test]
async fn the_outbox_backlog_rises_with_each_registration_and_falls_when_the_relay_publishes() {
    // No relay running: the test publishes with `relay().step()`, so the backlog stays put
    // until it does.
    let app = started(builder().without_background_tasks()).await;
    assert_eq!(app.metric("opd_outbox_unpublished").await, Some(0.0));
    assert_eq!(app.metric("opd_database_up").await, Some(1.0));

    for id in 1..=3 {
        register(&app, id).await;
    }
    assert_eq!(app.metric("opd_outbox_unpublished").await, Some(3.0));
    let age = app
        .metric("opd_outbox_oldest_unpublished_age_seconds")
        .await;
    assert!(age.is_some_and(|age| age > 0.0), "oldest age {age:?}");
    assert_eq!(app.metric(REGISTERED).await, Some(3.0));
    // One series per route, not per raw path: every id lands in the same one.
    app.get_expect("/opd/patient/view/1", 200).await;
    app.get_expect("/opd/patient/view/2", 200).await;
    assert_eq!(
        app.metric(
            r#"opd_http_requests_total{method="GET",route="/opd/patient/view/{id}",status="200"}"#
        )
        .await,
        Some(2.0)
    );
    app.post(REGISTER, &serde_json::json!({"id": 1})).await;
    assert_eq!(
        app.metric(
            r#"opd_http_requests_total{method="POST",route="/opd/patient/register",status="422"}"#
        )
        .await,
        Some(1.0)
    );

    assert_eq!(app.relay().step().await.unwrap(), 3);
    assert_eq!(app.metric("opd_outbox_unpublished").await, Some(0.0));
    assert_eq!(
        app.metric("opd_outbox_oldest_unpublished_age_seconds")
            .await,
        Some(0.0)
    );
    assert_eq!(app.metric("opd_outbox_published_total").await, Some(3.0));
    assert_eq!(
        app.metric("opd_outbox_publish_failures_total").await,
        Some(0.0)
    );
    assert_eq!(
        app.metric("opd_outbox_publish_duration_seconds_count")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_scrape_while_the_database_is_down_answers_and_says_so() {
    let app = started(builder().without_background_tasks()).await;
    register(&app, 1).await;
    assert_eq!(app.metric("opd_outbox_unpublished").await, Some(1.0));
    app.database.take_offline().await;
    assert_eq!(app.metric("opd_database_up").await, Some(0.0));
    // The last known backlog stays reported meanwhile.
    assert_eq!(app.metric("opd_outbox_unpublished").await, Some(1.0));
    app.database.bring_online().await;
    opd_testing::eventually("the database to be reported up", || async {
        (app.metric("opd_database_up").await == Some(1.0)).then_some(())
    })
    .await;
}
