//! Registration → inspection, through HTTP and JetStream.

#![allow(clippy::unwrap_used, reason = "a failed step must fail the test")]

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use inspection::SERVICE as INSPECTION;
use opd_testing::platform::ACK_WAIT;
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
    // And it stays that way: nothing is applied a second time later, when every message not
    // acknowledged would have been redelivered.
    tokio::time::sleep(ACK_WAIT + Duration::from_secs(1)).await;
    let again = platform
        .app(&INSPECTION)
        .get_expect("/opd/inspection/pending", 200)
        .await;
    assert_eq!(again.as_array().map(Vec::len), Some(40));
    platform.app(&INSPECTION).assert_handled_once(40).await;
}

#[tokio::test]
async fn inspection_killed_while_it_drains_a_backlog_loses_and_repeats_nothing() {
    let mut platform = Platform::start(&[&REGISTRATION, &INSPECTION]).await;
    platform.app_mut(&INSPECTION).stop().await;
    let registration = platform.app(&REGISTRATION);
    join_all((1..=200).map(|id| async move {
        registration
            .post_expect("/opd/patient/register", &patient(id), 201)
            .await
    }))
    .await;

    // Each visit takes 30 ms to write, so the crashes below land mid-drain: some of the backlog
    // handled, messages in hand, transactions open.
    platform
        .app(&INSPECTION)
        .execute(
            "create function slow_visit() returns trigger language plpgsql as
                 $$ begin perform pg_sleep(0.03); return new; end $$;
             create trigger slow_visit before insert on visits
                 for each row execute function slow_visit()",
        )
        .await;
    for _ in 0..2 {
        platform.app_mut(&INSPECTION).restart().await;
        let handled = platform
            .app(&INSPECTION)
            .count("select count(*) from processed_events");
        let started = handled.await;
        eventually("inspection to be draining", || async {
            let handled = platform
                .app(&INSPECTION)
                .count("select count(*) from processed_events")
                .await;
            (handled > started).then_some(())
        })
        .await;
        platform.app_mut(&INSPECTION).crash().await;
    }
    let handled = platform
        .app(&INSPECTION)
        .count("select count(*) from processed_events")
        .await;
    assert!(
        handled < 200,
        "the crashes came before the end of the backlog ({handled})"
    );
    platform
        .app(&INSPECTION)
        .execute("drop trigger slow_visit on visits")
        .await;
    platform.app_mut(&INSPECTION).restart().await;
    platform
        .app(&INSPECTION)
        .list_until(
            "/opd/inspection/pending?limit=1000",
            "all 200 patients",
            |list| list.len() >= 200,
        )
        .await;
    // Past the ack_wait, every message the crashed instances held has been redelivered.
    tokio::time::sleep(ACK_WAIT + Duration::from_secs(1)).await;
    let pending = platform
        .app(&INSPECTION)
        .get_expect("/opd/inspection/pending?limit=1000", 200)
        .await;
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for entry in pending.as_array().unwrap() {
        *seen.entry(entry["id"].as_i64().unwrap()).or_default() += 1;
    }
    assert_eq!(seen.len(), 200);
    assert!(seen.values().all(|&count| count == 1), "{seen:?}");
    platform.app(&INSPECTION).assert_handled_once(200).await;
}

#[tokio::test]
async fn losing_the_stream_leader_mid_stream_loses_nothing_and_the_flow_goes_on_without_it() {
    let platform = Platform::start_clustered(&[&REGISTRATION, &INSPECTION]).await;
    let registration = platform.app(&REGISTRATION);
    let inspection = platform.app(&INSPECTION);
    for id in 1..=10 {
        registration
            .post_expect("/opd/patient/register", &patient(id), 201)
            .await;
    }
    // The node that leads the stream, not an arbitrary one: its loss forces an election.
    let leader = inspection
        .stream_info()
        .await
        .cluster
        .and_then(|cluster| cluster.leader)
        .unwrap();
    let index = leader
        .strip_prefix("nats-")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap()
        - 1;
    platform.nats.kill_node(index).await;

    // Progress while it is down: the two remaining nodes elect a leader, the relay publishes
    // and the consumer delivers every patient registered before and after the loss.
    for id in 11..=20 {
        registration
            .post_expect("/opd/patient/register", &patient(id), 201)
            .await;
    }
    inspection
        .list_until(
            "/opd/inspection/pending",
            "20 patients without the old leader",
            |list| list.len() >= 20,
        )
        .await;
    let new_leader = inspection
        .stream_info()
        .await
        .cluster
        .and_then(|c| c.leader);
    assert!(
        new_leader.is_some_and(|name| name != leader),
        "a new leader was elected"
    );

    platform.nats.restart_node(index).await;
    for id in 21..=30 {
        registration
            .post_expect("/opd/patient/register", &patient(id), 201)
            .await;
    }
    let pending = inspection
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
    inspection.assert_handled_once(30).await;
}
