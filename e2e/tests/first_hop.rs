//! Registration → inspection, through HTTP and JetStream.

#![allow(clippy::unwrap_used, reason = "a failed step must fail the test")]

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use inspection::SERVICE as INSPECTION;
use opd_testing::{Platform, eventually};
use registration::SERVICE as REGISTRATION;
use serde_json::{Value, json};

fn patient(id: i64) -> Value {
    json!({"id": id, "full_name": format!("patient {id}"), "sex": "female", "phone": 711_000_000 + id})
}

#[tokio::test]
async fn a_registered_patient_is_inspected_and_sent_for_treatment() {
    let platform = Platform::start(&[&REGISTRATION, &INSPECTION]).await;
    let inspection = platform.app(&INSPECTION);

    assert_eq!(
        platform
            .app(&REGISTRATION)
            .post_expect("/opd/patient/register", &patient(200), 201)
            .await["id"],
        200
    );
    let pending = inspection
        .list_until("/opd/inspection/pending", "patient 200 pending", |list| {
            !list.is_empty()
        })
        .await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["id"], 200);

    let record = json!({"id": 200, "time": "2021/07/12 10:21 AM", "observations": "ABC Syncrome",
                        "medication": "XYZ x 3", "tests": "FBT, UC", "notes": "possible Covid-19"});
    let expected = json!({"id": 200, "medication": "XYZ x 3", "tests": "FBT, UC", "notes": "possible Covid-19"});
    assert_eq!(
        inspection
            .post_expect("/opd/inspection/record", &record, 201)
            .await,
        expected
    );
    assert_eq!(
        inspection.get_expect("/opd/inspection/pending", 200).await,
        json!([])
    );
    let treatment = eventually("patient.treatment", || async {
        let events = platform.events("patient.treatment").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(treatment, vec![expected]);
}

#[tokio::test]
async fn registrations_made_while_inspection_is_down_all_arrive_exactly_once() {
    let mut platform = Platform::start(&[&REGISTRATION, &INSPECTION]).await;
    // Tokens restart at midnight (UTC): pin the day so that the count cannot split.
    platform
        .app(&REGISTRATION)
        .execute(
            "create or replace function token_day() returns date
                 language sql stable as $$ select date '2021-07-12' $$",
        )
        .await;
    platform.app_mut(&INSPECTION).stop().await;

    let registration = platform.app(&REGISTRATION);
    join_all((1..=40).map(|id| async move {
        registration
            .post_expect("/opd/patient/register", &patient(id), 201)
            .await
    }))
    .await;

    platform.app_mut(&INSPECTION).restart().await;
    let pending = platform
        .app(&INSPECTION)
        .list_until("/opd/inspection/pending", "all 40 patients", |list| {
            list.len() >= 40
        })
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
        .app(&INSPECTION)
        .get_expect("/opd/inspection/pending", 200)
        .await;
    assert_eq!(again.as_array().map(Vec::len), Some(40));
    platform.app(&INSPECTION).assert_handled_once(40).await;
}

#[tokio::test]
async fn losing_a_nats_node_mid_stream_loses_nothing_and_duplicates_nothing() {
    let platform = Platform::start_clustered(&[&REGISTRATION, &INSPECTION]).await;
    let registration = platform.app(&REGISTRATION);
    for id in 1..=20 {
        registration
            .post_expect("/opd/patient/register", &patient(id), 201)
            .await;
        if id == 10 {
            platform.nats.kill_node(0).await;
        }
    }
    for id in 21..=30 {
        registration
            .post_expect("/opd/patient/register", &patient(id), 201)
            .await;
    }
    platform.nats.restart_node(0).await;
    let pending = platform
        .app(&INSPECTION)
        .list_until("/opd/inspection/pending", "all 30 patients", |list| {
            list.len() >= 30
        })
        .await;
    let ids: std::collections::BTreeSet<i64> = pending
        .iter()
        .map(|entry| entry["id"].as_i64().unwrap())
        .collect();
    assert_eq!(pending.len(), 30);
    assert_eq!(ids, (1..=30).collect());
    platform.app(&INSPECTION).assert_handled_once(30).await;
}
