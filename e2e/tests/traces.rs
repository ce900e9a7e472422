//! One patient's journey is one trace: a client that sends the same W3C `traceparent` with each
//! of its requests sees the four services' requests and the three consumers' handling of the
//! events in between under one trace id, carried through each outbox and JetStream.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a failed step must fail the test"
)]

use std::collections::{HashMap, HashSet};

use inspection::SERVICE as INSPECTION;
use opd_testing::{Platform, TestApp};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use registration::SERVICE as REGISTRATION;
use release::SERVICE as RELEASE;
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use treatment::SERVICE as TREATMENT;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn post(app: &TestApp, path: &str, body: &Value) {
    let response = app
        .client
        .post(app.url(path))
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "POST {path}");
}

async fn arrives(app: &TestApp, path: &str, id: i64) {
    app.list_until(path, &format!("patient {id} at {path}"), |list| {
        list.iter().any(|entry| entry["id"] == id)
    })
    .await;
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

#[tokio::test]
async fn one_patients_journey_is_one_trace_across_the_four_services() {
    // Installed before any service starts, so that the services' own set-up keeps it.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("e2e")))
        .init();

    let platform = Platform::start(&[&REGISTRATION, &INSPECTION, &TREATMENT, &RELEASE]).await;
    let id = 200;
    post(
        platform.app(&REGISTRATION),
        "/opd/patient/register",
        &json!({"id": id, "full_name": "chanaka fernando", "address": "44, sw19, london",
                "sex": "male", "phone": 222222222}),
    )
    .await;
    arrives(platform.app(&INSPECTION), "/opd/inspection/pending", id).await;
    post(
        platform.app(&INSPECTION),
        "/opd/inspection/record",
        &json!({"id": id, "time": "2021/07/12 10:21 AM", "observations": "ABC Syncrome",
                "medication": "XYZ x 3", "tests": "FBT, UC", "notes": "possible Covid-19"}),
    )
    .await;
    arrives(platform.app(&TREATMENT), "/opd/treatment/pending", id).await;
    post(
        platform.app(&TREATMENT),
        "/opd/treatment/release",
        &json!({"id": id, "time": "2021 07 12 8:35 PM", "next_state": "discharge",
                "post_medication": "NM x 10 days"}),
    )
    .await;
    arrives(platform.app(&RELEASE), "/opd/release/pending", id).await;
    post(
        platform.app(&RELEASE),
        "/opd/release/discharge",
        &json!({"id": id, "time": "2021 07 12 9:35 PM", "state": "discharge",
                "post_medication": "NM x 10 days", "notes": "follow up",
                "next_visit": "2021 08 12 09:00AM"}),
    )
    .await;
    provider.force_flush().unwrap();

    let trace_id = TraceId::from_hex(TRACE_ID).unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let traced: Vec<&SpanData> = spans
        .iter()
        .filter(|span| span.span_context.trace_id() == trace_id)
        .collect();
    let routes: HashSet<String> = traced
        .iter()
        .filter(|span| span.name == "http")
        .filter_map(|span| attribute(span, "route"))
        .collect();
    for route in [
        "/opd/patient/register",
        "/opd/inspection/record",
        "/opd/treatment/release",
        "/opd/release/discharge",
    ] {
        assert!(
            routes.contains(route),
            "no {route} request in the trace: {routes:?}"
        );
    }
    // Each consumer's handling is in the trace, as the child of a span of the request that
    // wrote the event (in another service).
    let ids: HashMap<SpanId, &SpanData> = traced
        .iter()
        .map(|span| (span.span_context.span_id(), *span))
        .collect();
    for durable in [
        "inspection-patient-register",
        "treatment-patient-treatment",
        "release-patient-release",
    ] {
        let handling = traced
            .iter()
            .find(|span| {
                span.name == "event" && attribute(span, "durable").as_deref() == Some(durable)
            })
            .unwrap_or_else(|| panic!("{durable}'s handling is not in the trace"));
        assert!(
            ids.contains_key(&handling.parent_span_id),
            "{durable}'s handling hangs from no span of the trace"
        );
    }
    // Requests without a traceparent start traces of their own: the pending-list polls above
    // sent none, and not one of them is in the patient's trace.
    let polls = |spans: &[&SpanData]| {
        spans
            .iter()
            .filter(|span| span.name == "http")
            .filter(|span| attribute(span, "route").as_deref() == Some("/opd/inspection/pending"))
            .count()
    };
    assert!(
        polls(&spans.iter().collect::<Vec<_>>()) > 0,
        "no poll was traced at all"
    );
    assert_eq!(
        polls(&traced),
        0,
        "a request without traceparent joined the trace"
    );

    // And the events were each handled once, none parked, in every consuming service.
    for service in [&INSPECTION, &TREATMENT, &RELEASE] {
        platform.app(service).assert_handled_once(1).await;
    }
}
