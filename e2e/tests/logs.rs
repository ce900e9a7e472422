//! What the logs hold of a patient: the JSON lines of a whole journey (four services, three
//! consumers, and an event that cannot be read) name the request id and trace id, show the
//! national id masked, and hold none of the personal or clinical fields whole.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step must fail the test"
)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use inspection::SERVICE as INSPECTION;
use opd_shared::events::PatientRegistered;
use opd_testing::stream::{new_meta, publish_raw};
use opd_testing::{Platform, TestApp, eventually};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use registration::SERVICE as REGISTRATION;
use release::SERVICE as RELEASE;
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use treatment::SERVICE as TREATMENT;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const REQUEST_ID: &str = "logs-test-register";
const ID: i64 = 987_654_321;

/// Every value sent below that identifies the patient or describes their care.
const PERSONAL: &[&str] = &[
    "987654321",
    "Kusum",
    "Jayawardena",
    "Temple Road",
    "771234567",
    "Persistent cough",
    "Rifampicin",
    "Sputum AFB",
    "suspected tuberculosis",
    "isoniazid",
];

/// The log lines of the whole test process, as a collector would receive them.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

async fn post(app: &TestApp, path: &str, body: &Value, request_id: &str) {
    let response = app
        .client
        .post(app.url(path))
        .header("traceparent", format!("00-{TRACE_ID}-b7ad6b7169203331-01"))
        .header("x-request-id", request_id)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "POST {path}");
}

async fn arrives(app: &TestApp, path: &str) {
    app.list_until(path, &format!("the patient at {path}"), |list| {
        list.iter().any(|entry| entry["id"] == ID)
    })
    .await;
}

/// The spans a line was written in, innermost last.
fn spans(line: &Value) -> Vec<&Value> {
    line["spans"]
        .as_array()
        .map(|spans| spans.iter().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_journey_logs_request_and_trace_ids_and_no_personal_field_whole() {
    let captured = Captured::default();
    let writer = captured.clone();
    let provider = SdkTracerProvider::builder().build();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            "info,opd_shared=debug,registration=debug,inspection=debug,treatment=debug,\
             release=debug,tower_http=debug,sqlx=debug",
        ))
        .with(opd_shared::infra::telemetry::json_logs(move || {
            writer.clone()
        }))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("e2e")))
        .init();

    let platform = Platform::start(&[&REGISTRATION, &INSPECTION, &TREATMENT, &RELEASE]).await;
    let registration = platform.app(&REGISTRATION);
    post(
        registration,
        "/opd/patient/register",
        &json!({"id": ID, "full_name": "Kusum Jayawardena", "address": "14 Temple Road, Kandy",
                "sex": "female", "phone": 771_234_567}),
        REQUEST_ID,
    )
    .await;
    registration
        .get_expect(&format!("/opd/patient/view/{ID}"), 200)
        .await;
    arrives(platform.app(&INSPECTION), "/opd/inspection/pending").await;
    post(
        platform.app(&INSPECTION),
        "/opd/inspection/record",
        &json!({"id": ID, "time": "2021/07/12 10:21 AM", "observations": "Persistent cough",
                "medication": "Rifampicin", "tests": "Sputum AFB", "notes": "suspected tuberculosis"}),
        "logs-test-inspect",
    )
    .await;
    arrives(platform.app(&TREATMENT), "/opd/treatment/pending").await;
    post(
        platform.app(&TREATMENT),
        "/opd/treatment/release",
        &json!({"id": ID, "time": "2021 07 12 8:35 PM", "next_state": "discharge",
                "post_medication": "isoniazid"}),
        "logs-test-release",
    )
    .await;
    arrives(platform.app(&RELEASE), "/opd/release/pending").await;
    post(
        platform.app(&RELEASE),
        "/opd/release/discharge",
        &json!({"id": ID, "time": "2021 07 12 9:35 PM", "state": "discharge",
                "post_medication": "isoniazid", "next_visit": "2021 08 12 09:00AM"}),
        "logs-test-discharge",
    )
    .await;
    // An event that cannot be read, quoting a name where the id belongs: parked, and its
    // parse error (which quotes the value) logged.
    let inspection = platform.app(&INSPECTION);
    publish_raw(
        &inspection.settings.nats,
        "patient.register",
        new_meta::<PatientRegistered>().to_headers(),
        br#"{"id":"Kusum Jayawardena","token":1}"#.to_vec(),
    )
    .await;
    // The row is committed a moment before the line is written: wait for both.
    eventually("the unreadable event parked and logged", || async {
        let parked = inspection.count("select count(*) from dead_letters").await == 1;
        let logged = captured
            .lines()
            .iter()
            .any(|line| line["message"] == "message parked in dead_letters");
        (parked && logged).then_some(())
    })
    .await;

    let lines = captured.lines();
    for line in &lines {
        let text = line.to_string();
        for value in PERSONAL {
            assert!(!text.contains(value), "{value:?} is logged whole: {text}");
        }
    }
    // The id shows masked: in the registration handler's span and in each consumer's line.
    let masked = |message: &str| {
        lines.iter().any(|line| {
            line["message"] == message
                && (line["patient_id"] == "**21"
                    || spans(line).iter().any(|span| span["patient_id"] == "**21"))
        })
    };
    for message in [
        "patient registered",
        "patient waiting for inspection",
        "patient waiting for treatment",
        "patient waiting for release",
    ] {
        assert!(masked(message), "no {message:?} line with the masked id");
    }
    // Every line written while the registration was served (the only one this test makes)
    // names its request and its trace.
    let in_request: Vec<&Value> = lines
        .iter()
        .filter(|line| {
            spans(line)
                .iter()
                .any(|span| span["name"] == "http" && span["route"] == "/opd/patient/register")
        })
        .collect();
    assert!(
        in_request.len() >= 2,
        "the registration wrote {} lines",
        in_request.len()
    );
    for line in &in_request {
        let http = spans(line)
            .into_iter()
            .find(|span| span["name"] == "http")
            .unwrap();
        assert_eq!(http["request_id"], REQUEST_ID, "{line}");
        assert_eq!(http["trace_id"], TRACE_ID, "{line}");
    }
    // The parse error is logged, with the value it quoted masked.
    let parked = lines
        .iter()
        .find(|line| line["message"] == "message parked in dead_letters")
        .unwrap();
    let reason = parked["reason"].as_str().unwrap();
    assert!(reason.contains("not a valid patient.register"), "{reason}");
    assert!(reason.contains("\"…\""), "{reason}");
}
