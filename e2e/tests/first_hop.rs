//! Registration → inspection, through HTTP and the JetStream cluster.

#![allow(clippy::unwrap_used, reason = "a failed step must fail the test")]

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use opd_e2e::{Platform, Service};
use opd_shared::testing::eventually;
use serde_json::{Value, json};

fn patient(id: i64) -> Value {
    json!({"id": id, "full_name": format!("patient {id}"), "sex": "female", "phone": 711_000_000 + id})
}

#[tokio::test]
async fn a_registered_patient_is_inspected_and_sent_for_treatment() {
    let platform = Platform::start(&[Service::Registration, Service::Inspection]).await;

    let response = platform
        .post(
            Service::Registration,
            "/opd/patient/register",
            &patient(200),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"id": 200, "token": 1})
    );

    let pending = platform
        .list_until(
            Service::Inspection,
            "/opd/inspection/pending",
            "patient 200 pending",
            |list| !list.is_empty(),
        )
        .await;
    assert_eq!(pending, vec![json!({"id": 200, "token": 1})]);

    let inspection = json!({"id": 200, "time": "2021/07/12 10:21 AM", "observations": "ABC Syncrome",
                            "medication": "XYZ x 3", "tests": "FBT, UC", "notes": "possible Covid-19"});
    let response = platform
        .post(Service::Inspection, "/opd/inspection/record", &inspection)
        .await;
    assert_eq!(response.status(), 201);
    let expected = json!({"id": 200, "medication": "XYZ x 3", "tests": "FBT, UC", "notes": "possible Covid-19"});
    assert_eq!(response.json::<Value>().await.unwrap(), expected);

    assert_eq!(
        platform
            .get(Service::Inspection, "/opd/inspection/pending")
            .await,
        json!([])
    );
    let treatment = eventually(Duration::from_secs(30), "patient.treatment", || async {
        let events = platform.events("patient.treatment").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(treatment, vec![expected]);
}

#[tokio::test]
async fn registrations_made_while_inspection_is_down_all_arrive_exactly_once() {
    let mut platform = Platform::start(&[Service::Registration, Service::Inspection]).await;
    platform.stop(Service::Inspection).await;

    let tokens: Vec<i64> = join_all((1..=40).map(|id| {
        let platform = &platform;
        async move {
            let response = platform
                .post(Service::Registration, "/opd/patient/register", &patient(id))
                .await;
            assert_eq!(
                response.status(),
                201,
                "registration {id} while inspection is down"
            );
            response.json::<Value>().await.unwrap()["token"]
                .as_i64()
                .unwrap()
        }
    }))
    .await;
    assert_eq!(tokens.len(), 40);

    platform.restart(Service::Inspection).await;
    let pending = platform
        .list_until(
            Service::Inspection,
            "/opd/inspection/pending",
            "all 40 patients",
            |list| list.len() >= 40,
        )
        .await;
    // Exactly once each, in token order.
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for entry in &pending {
        *seen.entry(entry["id"].as_i64().unwrap()).or_default() += 1;
    }
    assert_eq!(seen.len(), 40);
    assert!(seen.values().all(|&count| count == 1), "{seen:?}");
    let order: Vec<i64> = pending
        .iter()
        .map(|entry| entry["token"].as_i64().unwrap())
        .collect();
    assert_eq!(order, (1..=40).collect::<Vec<_>>());
    // And it stays that way: nothing is applied a second time later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = platform
        .get(Service::Inspection, "/opd/inspection/pending")
        .await;
    assert_eq!(again.as_array().map(Vec::len), Some(40));
}

#[tokio::test]
async fn losing_a_nats_node_mid_stream_loses_nothing_and_duplicates_nothing() {
    let mut platform = Platform::start(&[Service::Registration, Service::Inspection]).await;
    for id in 1..=20 {
        let response = platform
            .post(Service::Registration, "/opd/patient/register", &patient(id))
            .await;
        assert_eq!(response.status(), 201);
        if id == 10 {
            platform.nats.kill_node(0);
        }
    }
    for id in 21..=30 {
        let response = platform
            .post(Service::Registration, "/opd/patient/register", &patient(id))
            .await;
        assert_eq!(response.status(), 201);
    }
    platform.nats.restart_node(0).await;
    let pending = platform
        .list_until(
            Service::Inspection,
            "/opd/inspection/pending",
            "all 30 patients",
            |list| list.len() >= 30,
        )
        .await;
    let ids: std::collections::BTreeSet<i64> = pending
        .iter()
        .map(|entry| entry["id"].as_i64().unwrap())
        .collect();
    assert_eq!(pending.len(), 30);
    assert_eq!(ids, (1..=30).collect());
}
