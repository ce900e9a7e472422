//! The book's whole walkthrough, end to end through HTTP and events, for several patients.

#![allow(clippy::unwrap_used, reason = "a failed step must fail the test")]

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use opd_e2e::{ALL, Platform, Service};
use opd_shared::testing::eventually;
use serde_json::{Value, json};

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

async fn walk_one_patient(platform: &Platform, id: i64) {
    use Service::*;
    let token = platform
        .post(Registration, "/opd/patient/register", &registration(id))
        .await;
    assert_eq!(token.status(), 201);

    platform
        .list_until(
            Inspection,
            "/opd/inspection/pending",
            "the patient at inspection",
            |list| list.iter().any(|entry| entry["id"] == id),
        )
        .await;
    let inspection = json!({"id": id, "time": "2021/07/12 10:21 AM", "observations": "ABC Syncrome",
                            "medication": "XYZ x 3", "tests": "FBT, UC", "notes": "possible Covid-19"});
    assert_eq!(
        platform
            .post(Inspection, "/opd/inspection/record", &inspection)
            .await
            .status(),
        201
    );

    let pending = platform
        .list_until(
            Treatment,
            "/opd/treatment/pending",
            "the patient at treatment",
            |list| list.iter().any(|entry| entry["id"] == id),
        )
        .await;
    let entry = pending.iter().find(|entry| entry["id"] == id).unwrap();
    assert_eq!(
        entry,
        &json!({"id": id, "medication": "XYZ x 3", "tests": "FBT, UC", "notes": "possible Covid-19"})
    );
    let medication = json!({"id": id, "time": "2021 07 12 4:35 PM", "dose": "xyz x 1, abc x 2", "notes": "low fever"});
    let response = platform
        .post(Treatment, "/opd/treatment/medication", &medication)
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        "Record updated successfully"
    );
    let test = json!({"id": id, "time": "2021 07 12 4:35 PM", "test_name": "FBC",
                      "status": "sample collected", "notes": "possible covid-19"});
    let response = platform
        .post(Treatment, "/opd/treatment/tests", &test)
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        "Test recorded successfully"
    );
    assert_eq!(
        platform
            .get(Treatment, &format!("/opd/treatment/history/{id}"))
            .await,
        json!([{"id": id, "time": "2021 07 12 4:35 PM", "dose": "xyz x 1, abc x 2", "notes": "low fever"}])
    );
    assert_eq!(
        platform
            .get(Treatment, &format!("/opd/treatment/tests/{id}"))
            .await,
        json!([test])
    );

    let release = json!({"id": id, "time": "2021 07 12 8:35 PM", "next_state": disposition(id),
                         "post_medication": "NM x 10 days"});
    let response = platform
        .post(Treatment, "/opd/treatment/release", &release)
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        "Release event published"
    );

    let pending = platform
        .list_until(
            Release,
            "/opd/release/pending",
            "the patient at release",
            |list| list.iter().any(|entry| entry["id"] == id),
        )
        .await;
    assert_eq!(
        pending.iter().find(|entry| entry["id"] == id),
        Some(&release)
    );
    let discharge = json!({"id": id, "time": "2021 07 12 9:35 PM", "state": disposition(id),
                           "post_medication": "NM x 10 days", "notes": "follow up",
                           "next_visit": "2021 08 12 09:00AM"});
    let response = platform
        .post(Release, "/opd/release/discharge", &discharge)
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        "Patient discharge recorded successfully"
    );
}

#[tokio::test]
async fn several_patients_walk_the_whole_journey_at_once() {
    let platform = Platform::start(&ALL).await;
    join_all((1..=PATIENTS).map(|id| walk_one_patient(&platform, id))).await;

    // Every queue is empty again.
    for (service, path) in [
        (Service::Inspection, "/opd/inspection/pending"),
        (Service::Treatment, "/opd/treatment/pending"),
        (Service::Release, "/opd/release/pending"),
    ] {
        assert_eq!(platform.get(service, path).await, json!([]), "{path}");
    }
    // Admissions, and only admissions, were announced: once each, with the book's fields.
    let admissions = eventually(Duration::from_secs(30), "three admissions", || async {
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
    // The services' home links answer with the book's names.
    for (service, path, title) in [
        (
            Service::Treatment,
            "/opd/treatment/",
            "Treatment Service v0.1.0\n",
        ),
        (
            Service::Release,
            "/opd/release/",
            "Release Service v0.1.0\n",
        ),
    ] {
        let text = platform.running(service).get(path).await.text().await;
        assert_eq!(text.unwrap(), title);
    }
}

#[tokio::test]
async fn stopping_treatment_and_release_mid_journey_loses_and_repeats_nothing() {
    use Service::*;
    let mut platform = Platform::start(&ALL).await;
    let ids: Vec<i64> = (1..=12).collect();
    for &id in &ids {
        assert_eq!(
            platform
                .post(Registration, "/opd/patient/register", &registration(id))
                .await
                .status(),
            201
        );
    }
    platform
        .list_until(
            Inspection,
            "/opd/inspection/pending",
            "12 patients at inspection",
            |list| list.len() == 12,
        )
        .await;

    // Treatment goes down while inspection sends half of the patients its way.
    platform.stop(Treatment).await;
    for &id in &ids {
        let body = json!({"id": id, "time": "10:21", "medication": format!("dose for {id}")});
        assert_eq!(
            platform
                .post(Inspection, "/opd/inspection/record", &body)
                .await
                .status(),
            201
        );
        if id == 6 {
            platform.restart(Treatment).await;
        }
    }
    let pending = platform
        .list_until(
            Treatment,
            "/opd/treatment/pending",
            "12 patients at treatment",
            |list| list.len() >= 12,
        )
        .await;
    assert_exactly_once(&pending, &ids);

    // Release goes down while treatment asks for the releases.
    platform.stop(Release).await;
    for &id in &ids {
        let body = json!({"id": id, "time": "20:35", "next_state": disposition(id)});
        assert_eq!(
            platform
                .post(Treatment, "/opd/treatment/release", &body)
                .await
                .status(),
            201
        );
    }
    platform.restart(Release).await;
    let pending = platform
        .list_until(
            Release,
            "/opd/release/pending",
            "12 patients at release",
            |list| list.len() >= 12,
        )
        .await;
    assert_exactly_once(&pending, &ids);

    // Nothing arrives a second time later on either.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        platform
            .get(Treatment, "/opd/treatment/pending")
            .await
            .as_array()
            .map(Vec::len),
        Some(12)
    );
    assert_eq!(
        platform
            .get(Release, "/opd/release/pending")
            .await
            .as_array()
            .map(Vec::len),
        Some(12)
    );
}

fn assert_exactly_once(list: &[Value], ids: &[i64]) {
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for entry in list {
        *seen.entry(entry["id"].as_i64().unwrap()).or_default() += 1;
    }
    assert_eq!(seen.len(), ids.len(), "{list:?}");
    assert!(seen.values().all(|&count| count == 1), "{seen:?}");
}
