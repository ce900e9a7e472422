//! The exporter against a real three-node cluster: the figures follow what happens on the
//! stream, and a node that dies is reported down.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step must fail the test"
)]

use std::time::Duration;

use async_nats::jetstream::{consumer::pull, stream};
use futures::StreamExt;
use opd_nats_exporter::{Application, Settings};
use opd_testing::{NatsServer, eventually};

/// Serves the exporter for `nats` on a free port and returns its `/metrics` URL.
async fn exporter_for(nats: &NatsServer) -> String {
    let app = Application::build(Settings {
        listen: "127.0.0.1:0".into(),
        servers: nats.monitor_urls(),
        timeout: Duration::from_secs(1),
    })
    .await
    .unwrap();
    let port = app.port().unwrap();
    tokio::spawn(app.run_until(std::future::pending()));
    format!("http://127.0.0.1:{port}/metrics")
}

async fn metric(url: &str, series: &str) -> Option<i64> {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn until(url: &str, series: &str, value: i64) {
    eventually(&format!("{series} to be {value}"), || async {
        (metric(url, series).await == Some(value)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn lag_follows_the_stream_and_a_dead_node_is_reported() {
    let nats = NatsServer::cluster().await;
    let url = exporter_for(&nats).await;
    let js = opd_testing::stream::jetstream(&nats.admin_settings())
        .await
        .unwrap();
    let stream = js
        .create_stream(stream::Config {
            name: "EXPORTED".into(),
            // Inside `patient.>`: the administrator publishes there only.
            subjects: vec!["patient.exported.>".into()],
            num_replicas: 3,
            max_bytes: 1_048_576,
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("reader".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    for monitor in nats.monitor_urls() {
        until(
            &url,
            &format!(r#"nats_server_up{{monitor="{monitor}"}}"#),
            1,
        )
        .await;
    }
    until(&url, r#"nats_stream_has_leader{stream="EXPORTED"}"#, 1).await;
    until(
        &url,
        r#"nats_stream_max_bytes{stream="EXPORTED"}"#,
        1_048_576,
    )
    .await;

    for n in 0..5 {
        js.publish("patient.exported.thing", format!("{n}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let pending = r#"nats_consumer_pending{stream="EXPORTED",durable="reader"}"#;
    let ack_pending = r#"nats_consumer_ack_pending{stream="EXPORTED",durable="reader"}"#;
    until(&url, r#"nats_stream_messages{stream="EXPORTED"}"#, 5).await;
    until(&url, pending, 5).await;

    // Taken but not acknowledged: no longer pending, but in hand.
    let mut messages = consumer.fetch().max_messages(5).messages().await.unwrap();
    let mut taken = Vec::new();
    while let Some(message) = messages.next().await {
        taken.push(message.unwrap());
    }
    assert_eq!(taken.len(), 5);
    until(&url, pending, 0).await;
    until(&url, ack_pending, 5).await;
    for message in taken {
        message.ack().await.unwrap();
    }
    until(&url, ack_pending, 0).await;

    nats.kill_node(2).await;
    let dead = nats.monitor_urls()[2].clone();
    until(&url, &format!(r#"nats_server_up{{monitor="{dead}"}}"#), 0).await;
    // Two of three keep a leader, and the figures keep coming.
    until(&url, r#"nats_stream_has_leader{stream="EXPORTED"}"#, 1).await;
    until(&url, r#"nats_stream_messages{stream="EXPORTED"}"#, 5).await;
}

#[tokio::test]
async fn a_sites_link_is_counted_and_goes_quiet_when_cut() {
    let nats = NatsServer::single().await;
    opd_testing::stream::create(&nats.admin_settings()).await;
    let clinic = nats.clinic("clinic").await;
    let at_clinic = opd_testing::stream::as_admin(&clinic.settings_for("admin"));
    opd_nats_admin::site::create_site_stream(
        &at_clinic,
        &opd_testing::stream::settings_for(&at_clinic),
        opd_testing::PATIENCE,
    )
    .await
    .unwrap();
    opd_nats_admin::site::link(
        &nats.admin_settings(),
        &"clinic".parse().unwrap(),
        opd_testing::PATIENCE,
    )
    .await
    .unwrap();
    let url = exporter_for(&nats).await;
    until(&url, r#"nats_server_leafnodes{server="nats-1"}"#, 1).await;
    let active = r#"nats_stream_source_active_seconds{stream="PATIENT",site="clinic"}"#;
    let lag = r#"nats_stream_source_lag{stream="PATIENT",site="clinic"}"#;
    let js = opd_testing::stream::jetstream(&at_clinic).await.unwrap();
    js.publish("patient.register", "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    until(&url, lag, 0).await;
    eventually("the clinic to be heard from", || async {
        metric(&url, active)
            .await
            .filter(|seconds| (0..=2).contains(seconds))
    })
    .await;

    // Cut off, the clinic says nothing: the silence grows until the link heals.
    let cut = opd_testing::LinkCut::ports(&nats.leaf_ports());
    eventually("the clinic's silence to show", || async {
        metric(&url, active).await.filter(|seconds| *seconds >= 5)
    })
    .await;
    cut.heal();
    eventually("the clinic to be heard from again", || async {
        metric(&url, active)
            .await
            .filter(|seconds| (0..=2).contains(seconds))
    })
    .await;
}
