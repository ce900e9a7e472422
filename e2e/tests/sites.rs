//! A second site: a clinic with a NATS server, a stream and a registration instance of its own,
//! joined to the hospital as a leaf node (docs/architecture.md, "Sites"), and its link cut for
//! real: its packets dropped with nftables ([`LinkCut`]), not a polite stop. These tests need
//! root and `nft`, as scripts/test.sh runs them.

#![allow(clippy::unwrap_used, reason = "a failed step must fail the test")]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inspection::SERVICE as INSPECTION;
use opd_testing::platform::ACK_WAIT;
use opd_testing::{LeafServer, LinkCut, NatsServer, PATIENCE, TestApp, eventually_within};
use registration::SERVICE as REGISTRATION;
use serde_json::{Value, json};

/// How long a registration at a clinic cut off from the hospital may take: it is answered by
/// the clinic alone, so no longer than with the link up.
const ANSWERED_WITHIN: Duration = Duration::from_secs(1);

/// How long the hospital may take to have everything once the link heals.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(90);

struct TwoSites {
    hospital: Arc<NatsServer>,
    clinic: LeafServer,
    inspection: TestApp,
    registration: TestApp,
    registration_at_clinic: TestApp,
}

/// The hospital (inspection and registration on its NATS server) and a clinic (its own server,
/// stream and registration instance), linked as `opd-nats link-site` links them.
async fn two_sites() -> TwoSites {
    let hospital = Arc::new(NatsServer::single().await);
    let inspection = TestApp::builder(&INSPECTION)
        .nats(hospital.clone())
        .ack_wait(ACK_WAIT)
        .spawn()
        .await;
    let registration = TestApp::builder(&REGISTRATION)
        .nats(hospital.clone())
        .spawn()
        .await;
    let clinic = hospital.clinic("clinic").await;
    let registration_at_clinic = TestApp::builder(&REGISTRATION)
        .nats(hospital.clone())
        .on_site(&clinic)
        .spawn()
        .await;
    opd_nats_admin::site::link(
        &hospital.admin_settings(),
        &"clinic".parse().unwrap(),
        PATIENCE,
    )
    .await
    .unwrap();
    // Tokens restart at midnight (UTC): pin the day so that the count cannot split.
    for app in [&registration, &registration_at_clinic] {
        app.execute(
            "create or replace function token_day() returns date
                 language sql stable as $$ select date '2021-07-12' $$",
        )
        .await;
    }
    TwoSites {
        hospital,
        clinic,
        inspection,
        registration,
        registration_at_clinic,
    }
}

fn patient(id: i64) -> Value {
    json!({"id": id, "full_name": format!("patient {id}"), "sex": "male", "phone": 712_000_000 + id})
}

/// Registers `ids` at `app` one after another; each answer must come within
/// [`ANSWERED_WITHIN`] with a token of `site`. Returns the tokens.
async fn register_each(app: &TestApp, ids: impl Iterator<Item = i64>, site: &str) -> Vec<i64> {
    let mut tokens = Vec::new();
    for id in ids {
        let started = Instant::now();
        let issued = app
            .post_expect("/opd/patient/register", &patient(id), 201)
            .await;
        let took = started.elapsed();
        assert!(
            took < ANSWERED_WITHIN,
            "registering {id} took {took:?}: the clinic waited for the hospital"
        );
        assert_eq!(issued["site"], site, "{issued}");
        tokens.push(issued["token"].as_i64().unwrap());
    }
    tokens
}

/// The hospital's inspection queue, as (site, token) per patient.
async fn queue(inspection: &TestApp) -> Vec<Value> {
    inspection
        .get_expect("/opd/inspection/pending?limit=1000", 200)
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn from(site: &str, queue: &[Value]) -> Vec<i64> {
    queue
        .iter()
        .filter(|entry| entry["site"] == site)
        .map(|entry| entry["token"].as_i64().unwrap())
        .collect()
}

/// Waits until the hospital's queue holds `count` of the clinic's tokens; how long it took.
async fn caught_up(sites: &TwoSites, count: usize) -> Duration {
    let started = Instant::now();
    eventually_within(
        CATCH_UP_WITHIN,
        &format!("{count} clinic registrations at the hospital"),
        || async { (from("clinic", &queue(&sites.inspection).await).len() >= count).then_some(()) },
    )
    .await;
    started.elapsed()
}

/// Each of the clinic's registrations is in the hospital's queue once, in the clinic's token
/// order, and stays that way after every redelivery there could be.
async fn every_clinic_registration_once(sites: &TwoSites, tokens: &[i64]) {
    tokio::time::sleep(ACK_WAIT + Duration::from_secs(1)).await;
    let queue = queue(&sites.inspection).await;
    assert_eq!(from("clinic", &queue), tokens, "{queue:?}");
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for entry in &queue {
        *seen.entry(entry["id"].as_i64().unwrap()).or_default() += 1;
    }
    assert!(seen.values().all(|&count| count == 1), "{seen:?}");
    assert_eq!(
        sites
            .inspection
            .count("select count(*) from visits where site = 'clinic'")
            .await,
        i64::try_from(tokens.len()).unwrap()
    );
}

#[tokio::test]
async fn a_clinic_cut_off_keeps_registering_and_the_hospital_gets_each_registration_once() {
    let sites = two_sites().await;
    // The link works: a clinic's patient joins the hospital's queue, with the clinic's token,
    // beside the hospital's own token 1.
    let mut tokens = register_each(&sites.registration_at_clinic, 1..=1, "clinic").await;
    register_each(&sites.registration, 1001..=1001, "hospital").await;
    caught_up(&sites, 1).await;
    assert_eq!(
        queue(&sites.inspection).await,
        json!([{"id": 1, "token": 1, "site": "clinic"}, {"id": 1001, "token": 1, "site": "hospital"}])
            .as_array()
            .cloned()
            .unwrap()
    );

    let cut = LinkCut::ports(&sites.hospital.leaf_ports());
    tokens.extend(register_each(&sites.registration_at_clinic, 2..=31, "clinic").await);
    assert_eq!(tokens, (1..=31).collect::<Vec<_>>());
    // The cut is real: nothing crossed it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(from("clinic", &queue(&sites.inspection).await), [1]);

    cut.heal();
    let took = caught_up(&sites, 31).await;
    println!(
        "link-cut: 30 registrations made while cut off reached the hospital {took:?} after the link healed"
    );
    every_clinic_registration_once(&sites, &tokens).await;
}

#[tokio::test]
async fn the_hospital_restarting_and_the_clinics_server_dying_while_cut_off_lose_nothing() {
    let sites = two_sites().await;
    let mut tokens = register_each(&sites.registration_at_clinic, 1..=1, "clinic").await;
    caught_up(&sites, 1).await;

    let cut = LinkCut::ports(&sites.hospital.leaf_ports());
    tokens.extend(register_each(&sites.registration_at_clinic, 2..=11, "clinic").await);
    // The hospital restarts while the clinic cannot reach it.
    sites.hospital.restart_node(0).await;
    // The clinic's server dies (SIGKILL) with these registrations stored but not yet synced to
    // disk (`sync_interval`), and comes back.
    sites.clinic.kill().await;
    sites.clinic.start().await;
    tokens.extend(register_each(&sites.registration_at_clinic, 12..=16, "clinic").await);

    cut.heal();
    let took = caught_up(&sites, 16).await;
    println!(
        "link-cut with restarts: 15 registrations reached the hospital {took:?} after the link healed"
    );
    every_clinic_registration_once(&sites, &tokens).await;
}
