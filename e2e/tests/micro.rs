//! The services on NATS beyond events: every instance found through the Services API
//! (ADR-32), and the broadcast question "where is this patient?" answered by every service,
//! with a stopped service reported as not answering.

#![allow(clippy::unwrap_used, reason = "a failed step must fail the test")]

use std::time::Duration;

use inspection::SERVICE as INSPECTION;
use opd_nats_admin::services;
use opd_shared::micro::ask::Answer;
use opd_testing::{Platform, stream};
use registration::SERVICE as REGISTRATION;
use release::SERVICE as RELEASE;
use serde_json::{Value, json};
use treatment::SERVICE as TREATMENT;

const DEADLINE: Duration = Duration::from_secs(2);

async fn admin(platform: &Platform) -> async_nats::Client {
    stream::connect(&platform.nats.admin_settings(), "admin")
        .await
        .unwrap()
}

/// Every service answers, so the platform has registered with the Services API.
async fn all_registered(client: &async_nats::Client) -> Vec<services::Instance> {
    opd_testing::eventually("four services in the Services API", || async {
        let found = services::discover(client, Duration::from_millis(500))
            .await
            .unwrap();
        (found.len() >= 4).then_some(found)
    })
    .await
}

#[tokio::test]
async fn every_instance_is_found_and_answers_where_a_patient_is_until_it_stops() {
    let mut platform = Platform::start(&[&REGISTRATION, &INSPECTION, &TREATMENT, &RELEASE]).await;
    let client = admin(&platform).await;
    let instances = all_registered(&client).await;
    let names: Vec<&str> = instances.iter().map(|i| i.info.name.as_str()).collect();
    assert_eq!(
        names,
        ["inspection", "registration", "release", "treatment"]
    );
    for instance in &instances {
        let name = &instance.info.name;
        let subjects: Vec<&str> = instance
            .info
            .endpoints
            .iter()
            .map(|e| e.subject.as_str())
            .collect();
        assert!(
            subjects.contains(&format!("opd.{name}.patient").as_str()),
            "{subjects:?}"
        );
        assert!(subjects.contains(&"opd.where"), "{subjects:?}");
        assert_eq!(instance.info.version, "0.1.0");
        assert!(instance.stats.is_some(), "{name} sent no stats");
    }

    // Patient 200 registered: registration and inspection know them, the others do not.
    let registration = platform.app(&REGISTRATION);
    registration
        .post_expect(
            "/opd/patient/register",
            &json!({"id": 200, "full_name": "chanaka"}),
            201,
        )
        .await;
    platform
        .app(&INSPECTION)
        .list_until(
            "/opd/inspection/pending",
            "patient 200 at inspection",
            |list| !list.is_empty(),
        )
        .await;
    let answers = registration.get_expect("/opd/patient/where/200", 200).await;
    assert_eq!(answers["id"], 200);
    let status = |answers: &Value, service: &str| answers["services"][service]["status"].clone();
    assert_eq!(status(&answers, "registration"), "here", "{answers}");
    assert_eq!(
        answers["services"]["registration"]["whereabouts"]["token"],
        1
    );
    assert_eq!(status(&answers, "inspection"), "here", "{answers}");
    let at_inspection = &answers["services"]["inspection"]["whereabouts"];
    assert_eq!(
        (&at_inspection["waiting"], &at_inspection["ahead"]),
        (&json!(true), &json!(0)),
        "{answers}"
    );
    assert_eq!(status(&answers, "treatment"), "not-here", "{answers}");
    assert_eq!(status(&answers, "release"), "not-here", "{answers}");

    // The stats are true: each service's broadcast endpoint counted that question.
    let instances = services::discover(&client, DEADLINE).await.unwrap();
    for instance in &instances {
        let counted = instance
            .stats
            .as_ref()
            .and_then(|stats| stats.endpoints.iter().find(|e| e.name == "where"))
            .map_or(0, |e| e.requests);
        assert!(
            counted >= 1,
            "{} counted {counted} questions",
            instance.info.name
        );
    }

    // Release stopped: not answering, which is not "not here".
    platform.app_mut(&RELEASE).stop().await;
    let answers = services::where_is(&client, "200".parse().unwrap(), DEADLINE)
        .await
        .unwrap();
    assert_eq!(answers.services["release"], Answer::NotAnswering);
    assert!(matches!(
        answers.services["inspection"],
        Answer::Here { .. }
    ));
    let left = services::discover(&client, DEADLINE).await.unwrap();
    assert_eq!(left.len(), 3, "a stopped instance left the Services API");
}

#[tokio::test]
async fn the_services_api_answers_as_adr_32_specifies_and_a_bad_question_is_a_400() {
    let platform = Platform::start(&[&INSPECTION]).await;
    let client = admin(&platform).await;
    all_registered_one(&client).await;
    let reply = |subject: &'static str| {
        let client = client.clone();
        async move {
            let replies = services::gather(&client, subject, Duration::from_millis(500))
                .await
                .unwrap();
            let reply = replies
                .first()
                .unwrap_or_else(|| panic!("no answer on {subject}"));
            serde_json::from_slice::<Value>(&reply.payload).unwrap()
        }
    };
    // The fields ADR-32 gives each response type.
    let ping = reply("$SRV.PING.inspection").await;
    assert_eq!(ping["type"], "io.nats.micro.v1.ping_response");
    for field in ["name", "id", "version", "metadata"] {
        assert!(ping.get(field).is_some(), "ping lacks {field}: {ping}");
    }
    let info = reply("$SRV.INFO.inspection").await;
    assert_eq!(info["type"], "io.nats.micro.v1.info_response");
    for field in [
        "name",
        "id",
        "version",
        "description",
        "metadata",
        "endpoints",
    ] {
        assert!(info.get(field).is_some(), "info lacks {field}: {info}");
    }
    for endpoint in info["endpoints"].as_array().unwrap() {
        for field in ["name", "subject", "queue_group"] {
            assert!(
                endpoint.get(field).is_some(),
                "endpoint lacks {field}: {endpoint}"
            );
        }
        assert_eq!(endpoint["queue_group"], "inspection");
    }
    let stats = reply("$SRV.STATS.inspection").await;
    assert_eq!(stats["type"], "io.nats.micro.v1.stats_response");
    for field in ["name", "id", "version", "started", "endpoints"] {
        assert!(stats.get(field).is_some(), "stats lacks {field}: {stats}");
    }
    for endpoint in stats["endpoints"].as_array().unwrap() {
        for field in [
            "name",
            "subject",
            "num_requests",
            "num_errors",
            "processing_time",
            "average_processing_time",
        ] {
            assert!(
                endpoint.get(field).is_some(),
                "endpoint stats lack {field}: {endpoint}"
            );
        }
    }

    // A question that does not parse is answered with an ADR-32 error, not left to time out.
    let answer = client
        .request("opd.inspection.patient", "not json".into())
        .await
        .unwrap();
    let headers = answer.headers.unwrap();
    assert_eq!(
        headers
            .get(async_nats::service::NATS_SERVICE_ERROR_CODE)
            .map(|v| v.as_str().to_owned()),
        Some("400".to_owned())
    );
    // And a good one, on the service's own subject.
    let answer = client
        .request("opd.inspection.patient", r#"{"id": 5}"#.into())
        .await
        .unwrap();
    let located: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(
        located,
        json!({"service": "inspection", "id": 5, "here": null})
    );
}

async fn all_registered_one(client: &async_nats::Client) {
    opd_testing::eventually("inspection in the Services API", || async {
        let found = services::discover(client, Duration::from_millis(500))
            .await
            .unwrap();
        (!found.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_instance_beats_with_its_health_and_leaves_the_presence_view_when_it_stops() {
    let ttl = Duration::from_secs(2);
    let mut app = opd_testing::TestApp::builder(&INSPECTION)
        .settings(|settings| settings.nats.heartbeat_interval = Duration::from_millis(300))
        .stream_settings(move |stream| stream.presence_ttl = ttl)
        .spawn()
        .await;
    let client = stream::connect(&app.nats.admin_settings(), "admin")
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let beat = opd_testing::eventually("inspection's heartbeat, consuming", || async {
        let beats = opd_nats_admin::presence::live(&js).await.unwrap();
        beats.into_iter().find(|beat| {
            beat.service == "inspection"
                && beat
                    .consumers
                    .get("inspection-patient-register")
                    .map(String::as_str)
                    == Some("consuming")
        })
    })
    .await;
    assert!(beat.database, "{beat:?}");
    assert!(beat.authentication, "{beat:?}");
    assert_eq!(beat.version, "0.1.0");
    assert_eq!(beat.interval_ms, 300);

    app.stop().await;
    let stopped = tokio::time::Instant::now();
    opd_testing::eventually(
        "the stopped instance to leave the presence view",
        || async {
            let beats = opd_nats_admin::presence::live(&js).await.unwrap();
            beats.is_empty().then_some(())
        },
    )
    .await;
    let gone_after = stopped.elapsed();
    assert!(
        gone_after <= ttl + Duration::from_secs(2),
        "left after {gone_after:?}, the bound is {ttl:?} and a beat"
    );
}
