//! The control plane: an operator pauses and resumes a service's durable consumer, puts one
//! instance or all into maintenance, and changes the log filter, each over NATS without a
//! restart, each acknowledged by every instance it reached, each visible in `/readyz`, the
//! heartbeat and the metrics.

#![allow(clippy::unwrap_used, reason = "a failed step must fail the test")]

use std::time::Duration;

use inspection::SERVICE as INSPECTION;
use opd_nats_admin::control::{self, Outcome, Target};
use opd_nats_admin::presence;
use opd_shared::control::{Ack, Command, subject};
use opd_shared::micro::heartbeat::Heartbeat;
use opd_testing::{Platform, TestApp, eventually, stream};
use registration::SERVICE as REGISTRATION;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(3);
const DURABLE: &str = "inspection-patient-register";

struct Operator {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
}

impl Operator {
    async fn of(app: &TestApp) -> Self {
        let client = stream::connect(&app.nats.admin_settings(), "admin")
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client.clone());
        Self { client, js }
    }

    /// The live instances of `service`, once there are `count` of them.
    async fn alive(&self, service: &str, count: usize) -> Vec<Heartbeat> {
        eventually(
            &format!("{count} instance(s) of {service} beating"),
            || async {
                let beats = presence::live(&self.js).await.ok()?;
                let found: Vec<Heartbeat> =
                    beats.into_iter().filter(|b| b.service == service).collect();
                (found.len() == count).then_some(found)
            },
        )
        .await
    }

    async fn send(&self, service: &str, instance: Option<&str>, command: Command) -> Outcome {
        let target = Target::new(service, instance, &command).unwrap();
        let alive = presence::live(&self.js).await.unwrap();
        control::send(&self.client, &target, &command, &alive, DEADLINE)
            .await
            .unwrap()
    }
}

fn only(outcome: &Outcome) -> &Ack {
    assert_eq!(outcome.acks.len(), 1, "{outcome:?}");
    assert!(outcome.not_answering.is_empty(), "{outcome:?}");
    &outcome.acks[0]
}

async fn readyz(base: &TestApp) -> Value {
    base.get_expect("/readyz", 200).await
}

#[tokio::test]
async fn a_paused_consumer_holds_events_back_then_delivers_each_once_when_resumed() {
    let platform = Platform::start(&[&REGISTRATION, &INSPECTION]).await;
    let registration = platform.app(&REGISTRATION);
    let inspection = platform.app(&INSPECTION);
    let operator = Operator::of(inspection).await;
    operator.alive("inspection", 1).await;

    let until = chrono::Utc::now() + chrono::Duration::minutes(10);
    let paused = operator
        .send("inspection", None, Command::Pause { until })
        .await;
    let ack = only(&paused);
    assert!(ack.ok, "{ack:?}");
    assert_eq!(ack.state.consumers[DURABLE], "paused", "{ack:?}");
    assert_eq!(readyz(inspection).await["consumers"][DURABLE], "paused");
    let series = format!("opd_consumer_paused{{durable=\"{DURABLE}\"}}");
    assert_eq!(inspection.metric(&series).await, Some(1.0));

    for id in 301..=303 {
        registration
            .post_expect(
                "/opd/patient/register",
                &json!({"id": id, "full_name": format!("patient {id}")}),
                201,
            )
            .await;
    }
    // The backlog grows in the stream, and nothing reaches inspection: not now, and not after
    // several of the pull's heartbeats (the consumer stays bound, paused, not rebinding).
    eventually("three events waiting for inspection", || async {
        let (pending, _) = stream::consumer_backlog(&inspection.settings.nats, DURABLE).await?;
        (pending == 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        inspection
            .count("select count(*) from processed_events")
            .await,
        0
    );
    assert_eq!(readyz(inspection).await["consumers"][DURABLE], "paused");
    let beat = operator.alive("inspection", 1).await;
    assert_eq!(beat[0].consumers[DURABLE], "paused", "{beat:?}");

    let resumed = operator.send("inspection", None, Command::Resume).await;
    let ack = only(&resumed);
    assert!(ack.ok, "{ack:?}");
    assert_eq!(ack.state.consumers[DURABLE], "consuming", "{ack:?}");
    inspection
        .list_until(
            "/opd/inspection/pending",
            "three patients at inspection",
            |list| list.len() == 3,
        )
        .await;
    inspection.caught_up(DURABLE).await;
    inspection.assert_handled_once(3).await;
    assert_eq!(inspection.metric(&series).await, Some(0.0));
    assert_eq!(
        inspection
            .metric("opd_control_commands_total{command=\"pause\",outcome=\"ok\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn maintenance_refuses_changes_with_retry_after_keeps_reads_and_can_address_one_instance() {
    let platform = Platform::start(&[&REGISTRATION]).await;
    let first = platform.app(&REGISTRATION);
    let second = first.spawn_replica().await;
    let operator = Operator::of(first).await;
    let instances = operator.alive("registration", 2).await;
    first
        .post_expect(
            "/opd/patient/register",
            &json!({"id": 400, "full_name": "before"}),
            201,
        )
        .await;

    // Both instances, by the service.
    let on = Command::Maintenance {
        on: true,
        retry_after_secs: 120,
        reason: "database migration".into(),
    };
    let outcome = operator.send("registration", None, on.clone()).await;
    assert!(outcome.complete(), "{outcome:?}");
    assert_eq!(outcome.acks.len(), 2, "{outcome:?}");
    let register = |id: i64| {
        first
            .client
            .post(first.url("/opd/patient/register"))
            .header("idempotency-key", format!("maintenance-{id}"))
            .json(&json!({"id": id, "full_name": "during"}))
    };
    let refused = register(401).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "120");
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/maintenance", "{problem}");
    let other = first
        .client
        .put(second.url("/opd/patient/update"))
        .json(&json!({"id": 400, "full_name": "changed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        503,
        "the replica took a change in maintenance"
    );
    // Reads go on.
    first.get_expect("/opd/patient/view/400", 200).await;
    let ready = readyz(first).await;
    assert_eq!(
        ready["maintenance"]["reason"], "database migration",
        "{ready}"
    );
    assert_eq!(first.metric("opd_maintenance").await, Some(1.0));
    eventually("heartbeats that say maintenance", || async {
        let beats = presence::live(&operator.js).await.ok()?;
        beats
            .iter()
            .filter(|b| b.service == "registration" && b.maintenance)
            .count()
            .eq(&2)
            .then_some(())
    })
    .await;

    // Out again: the refused request, retried with its key, is carried out (the refusal was not
    // stored as its answer).
    let off = Command::Maintenance {
        on: false,
        retry_after_secs: 0,
        reason: String::new(),
    };
    assert!(
        operator
            .send("registration", None, off.clone())
            .await
            .complete()
    );
    assert_eq!(register(401).send().await.unwrap().status(), 201);
    assert_eq!(readyz(first).await["maintenance"], "off");

    // One instance, by (the start of) its id: only that one refuses.
    let one = &instances[0].instance;
    let outcome = operator
        .send("registration", Some(&one[..8]), on.clone())
        .await;
    assert_eq!(only(&outcome).instance, *one);
    let states = [readyz(first).await, {
        let url = second.url("/readyz");
        first
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }];
    let in_maintenance = states.iter().filter(|s| s["maintenance"] != "off").count();
    assert_eq!(in_maintenance, 1, "{states:?}");
    operator.send("registration", Some(one), off).await;
}

#[tokio::test]
async fn the_log_filter_changes_without_a_restart_and_what_cannot_be_done_is_refused() {
    let platform = Platform::start(&[&REGISTRATION, &INSPECTION]).await;
    let inspection = platform.app(&INSPECTION);
    let operator = Operator::of(inspection).await;
    operator.alive("inspection", 1).await;
    operator.alive("registration", 1).await;
    let before = readyz(inspection).await["log_filter"].clone();

    let filter = "warn,opd_shared::control=info";
    let outcome = operator
        .send(
            "inspection",
            None,
            Command::LogFilter {
                filter: filter.into(),
            },
        )
        .await;
    let ack = only(&outcome);
    assert!(ack.ok, "{ack:?}");
    assert_eq!(ack.state.log_filter.as_deref(), Some(filter));
    assert_eq!(readyz(inspection).await["log_filter"], filter);
    let series = format!("opd_log_filter_info{{filter=\"{filter}\"}}");
    assert_eq!(inspection.metric(&series).await, Some(1.0));

    // A filter that does not parse changes nothing.
    let outcome = operator
        .send(
            "inspection",
            None,
            Command::LogFilter {
                filter: "opd_shared=loudest".into(),
            },
        )
        .await;
    let ack = only(&outcome);
    assert!(
        !ack.ok && ack.detail.contains("not a log filter"),
        "{ack:?}"
    );
    assert_eq!(readyz(inspection).await["log_filter"], filter);
    assert_eq!(
        inspection
            .metric("opd_control_commands_total{command=\"log-filter\",outcome=\"refused\"}")
            .await,
        Some(1.0)
    );

    // Registration has no consumer to pause: refused, and said so.
    let until = chrono::Utc::now() + chrono::Duration::minutes(1);
    let outcome = operator
        .send("registration", None, Command::Pause { until })
        .await;
    let ack = only(&outcome);
    assert!(
        !ack.ok && ack.detail.contains("no durable consumer"),
        "{ack:?}"
    );
    assert!(!outcome.complete());

    // A command that does not parse is answered as such, not left to time out.
    let reply = operator
        .client
        .request(
            subject("inspection", None),
            "{\"command\":\"explode\"}".into(),
        )
        .await
        .unwrap();
    let ack: Ack = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        (ack.command.as_str(), ack.ok),
        ("unknown", false),
        "{ack:?}"
    );

    // Back as it was, for the other tests of this process.
    if let Some(before) = before.as_str() {
        let restore = Command::LogFilter {
            filter: before.to_owned(),
        };
        assert!(operator.send("inspection", None, restore).await.complete());
    }
}
