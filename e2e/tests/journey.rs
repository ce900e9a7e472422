//! The book's whole walkthrough, end to end through HTTP and events, for several patients.

#![allow(clippy::unwrap_used, reason = "a failed step must fail the test")]

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use inspection::SERVICE as INSPECTION;
use opd_testing::platform::ACK_WAIT;
use opd_testing::{Platform, TestApp, eventually};
use registration::SERVICE as REGISTRATION;
use release::SERVICE as RELEASE;
use serde_json::{Value, json};
use treatment::SERVICE as TREATMENT;

const PATIENTS: i64 = 6;

fn registration(id: i64) -> Value {
    json!({"full_name": format!("patient {id}"), "address": "44, sw19, london", "id": id,
           "sex": "male", "phone": 222222222})
}

/// Patients with an even id are discharged; odd ones are sent for admission.
fn disposition(id: i64) -> &'static str {
    if id % 2 == 0 {
        "discharge"
    } else {
        "admission"
    }
}

/// Waits until patient `id` is on the list at `path`, and returns the patient's entry.
async fn arrives(app: &TestApp, path: &str, id: i64) -> Value {
    let list = app
        .list_until(path, &format!("patient {id} at {path}"), |list| {
            list.iter().any(|entry| entry["id"] == id)
        })
        .await;
    list.into_iter().find(|entry| entry["id"] == id).unwrap()
}

async fn walk_one_patient(platform: &Platform, id: i64) {
    let registration_app = platform.app(&REGISTRATION);
    let inspection = platform.app(&INSPECTION);
    let treatment = platform.app(&TREATMENT);
    let release = platform.app(&RELEASE);
    registration_app
        .post_expect("/opd/patient/register", &registration(id), 201)
        .await;

    arrives(inspection, "/opd/inspection/pending", id).await;
    let record = json!({"id": id, "time": "2021/07/12 10:21 AM", "observations": "ABC Syncrome",
                        "medication": "XYZ x 3", "tests": "FBT, UC", "notes": "possible Covid-19"});
    inspection
        .post_expect("/opd/inspection/record", &record, 201)
        .await;

    assert_eq!(
        arrives(treatment, "/opd/treatment/pending", id).await,
        json!({"id": id, "medication": "XYZ x 3", "tests": "FBT, UC", "notes": "possible Covid-19"})
    );
    let medication = json!({"id": id, "time": "2021 07 12 4:35 PM", "dose": "xyz x 1, abc x 2", "notes": "low fever"});
    assert_eq!(
        treatment
            .post_expect("/opd/treatment/medication", &medication, 201)
            .await,
        "Record updated successfully"
    );
    let test = json!({"id": id, "time": "2021 07 12 4:35 PM", "test_name": "FBC",
                      "status": "sample collected", "notes": "possible covid-19"});
    assert_eq!(
        treatment
            .post_expect("/opd/treatment/tests", &test, 201)
            .await,
        "Test recorded successfully"
    );
    assert_eq!(
        treatment
            .get_expect(&format!("/opd/treatment/history/{id}"), 200)
            .await,
        json!([medication])
    );
    assert_eq!(
        treatment
            .get_expect(&format!("/opd/treatment/tests/{id}"), 200)
            .await,
        json!([test])
    );

    let request = json!({"id": id, "time": "2021 07 12 8:35 PM", "next_state": disposition(id),
                         "post_medication": "NM x 10 days"});
    assert_eq!(
        treatment
            .post_expect("/opd/treatment/release", &request, 201)
            .await,
        "Release event published"
    );

    assert_eq!(arrives(release, "/opd/release/pending", id).await, request);
    let discharge = json!({"id": id, "time": "2021 07 12 9:35 PM", "state": disposition(id),
                           "post_medication": "NM x 10 days", "notes": "follow up",
                           "next_visit": "2021 08 12 09:00AM"});
    assert_eq!(
        release
            .post_expect("/opd/release/discharge", &discharge, 201)
            .await,
        "Patient discharge recorded successfully"
    );
}

#[tokio::test]
async fn several_patients_walk_the_whole_journey_at_once() {
    let platform = Platform::start(&[&REGISTRATION, &INSPECTION, &TREATMENT, &RELEASE]).await;
    join_all((1..=PATIENTS).map(|id| walk_one_patient(&platform, id))).await;

    // Every queue is empty again.
    for (service, path) in [
        (&INSPECTION, "/opd/inspection/pending"),
        (&TREATMENT, "/opd/treatment/pending"),
        (&RELEASE, "/opd/release/pending"),
    ] {
        assert_eq!(
            platform.app(service).get_expect(path, 200).await,
            json!([]),
            "{path}"
        );
    }
    // Admissions, and only admissions, were announced: once each, with the book's fields.
    let admissions = eventually("three admissions", || async {
        let events = platform.events("patient.admission").await;
        (events.len() >= 3).then_some(events)
    })
    .await;
    let mut ids: Vec<i64> = admissions
        .iter()
        .map(|event| event["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 3, 5]);
    assert!(
        admissions
            .iter()
            .all(|event| event["time"] == "2021 07 12 9:35 PM"
                && event["notes"] == "follow up"
                && event.as_object().unwrap().len() == 3)
    );
    for service in [&INSPECTION, &TREATMENT, &RELEASE] {
        platform.app(service).assert_handled_once(PATIENTS).await;
    }
}

#[tokio::test]
async fn stopping_treatment_and_release_mid_journey_loses_and_repeats_nothing() {
    let mut platform = Platform::start(&[&REGISTRATION, &INSPECTION, &TREATMENT, &RELEASE]).await;
    let ids: Vec<i64> = (1..=12).collect();
    for &id in &ids {
        platform
            .app(&REGISTRATION)
            .post_expect("/opd/patient/register", &registration(id), 201)
            .await;
    }
    platform
        .app(&INSPECTION)
        .list_until(
            "/opd/inspection/pending",
            "12 patients at inspection",
            |list| list.len() == 12,
        )
        .await;

    // Treatment goes down while inspection sends half of the patients its way.
    platform.app_mut(&TREATMENT).stop().await;
    for &id in &ids {
        let body = json!({"id": id, "time": "10:21", "medication": format!("dose for {id}")});
        platform
            .app(&INSPECTION)
            .post_expect("/opd/inspection/record", &body, 201)
            .await;
        if id == 6 {
            platform.app_mut(&TREATMENT).restart().await;
        }
    }
    let pending = platform
        .app(&TREATMENT)
        .list_until(
            "/opd/treatment/pending",
            "12 patients at treatment",
            |list| list.len() >= 12,
        )
        .await;
    assert_exactly_once(&pending, &ids);

    // Release goes down while treatment asks for the releases.
    platform.app_mut(&RELEASE).stop().await;
    for &id in &ids {
        let body = json!({"id": id, "time": "20:35", "next_state": disposition(id)});
        platform
            .app(&TREATMENT)
            .post_expect("/opd/treatment/release", &body, 201)
            .await;
    }
    platform.app_mut(&RELEASE).restart().await;
    let pending = platform
        .app(&RELEASE)
        .list_until("/opd/release/pending", "12 patients at release", |list| {
            list.len() >= 12
        })
        .await;
    assert_exactly_once(&pending, &ids);

    // Nothing arrives a second time later on either, past the consumers' ack_wait.
    tokio::time::sleep(ACK_WAIT + Duration::from_secs(1)).await;
    for (service, path) in [
        (&TREATMENT, "/opd/treatment/pending"),
        (&RELEASE, "/opd/release/pending"),
    ] {
        let list = platform.app(service).get_expect(path, 200).await;
        assert_eq!(list.as_array().map(Vec::len), Some(12), "{path}");
    }
    for service in [&INSPECTION, &TREATMENT, &RELEASE] {
        platform.app(service).assert_handled_once(12).await;
    }
}

fn assert_exactly_once(list: &[Value], ids: &[i64]) {
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for entry in list {
        *seen.entry(entry["id"].as_i64().unwrap()).or_default() += 1;
    }
    assert_eq!(seen.len(), ids.len(), "{list:?}");
    assert!(seen.values().all(|&count| count == 1), "{seen:?}");
}
