//! Break-in attempts against the real cluster, configured as the platform is (`nats/node.conf`,
//! `nats/cluster.conf`, `nats/auth.conf`): TLS only, one identity per service. Every refusal is
//! paired with what the right identity can do, so that each test fails if a permission is
//! widened (the refused attempt would then succeed), and cannot pass because nothing works.

#![allow(clippy::unwrap_used, reason = "a failed step must fail the test")]

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use futures::future::join_all;
use inspection::SERVICE as INSPECTION;
use opd_shared::events::{DURABLES, Event, PatientRegistered, headers};
use opd_shared::infra::config::NatsSettings;
use opd_testing::nats::RogueNode;
use opd_testing::stream::{self, new_meta};
use opd_testing::{NatsServer, TestApp, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Who publishes what (the book's subjects) and the durable consumer each service runs.
const SERVICES: [(&str, &str, Option<&str>); 4] = [
    ("registration", "patient.register", None),
    (
        "inspection",
        "patient.treatment",
        Some("inspection-patient-register"),
    ),
    (
        "treatment",
        "patient.release",
        Some("treatment-patient-treatment"),
    ),
    (
        "release",
        "patient.admission",
        Some("release-patient-release"),
    ),
];

/// Long enough for an acknowledgement from an idle local server, short enough to try many.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);

async fn server_with_stream() -> Arc<NatsServer> {
    let nats = Arc::new(NatsServer::single().await);
    opd_testing::stream::create(&nats.admin_settings()).await;
    nats
}

async fn connect_as(nats: &NatsServer, identity: &str) -> jetstream::Context {
    let client = stream::connect(&nats.settings_for(identity), identity)
        .await
        .unwrap_or_else(|e| panic!("{identity} cannot connect: {e}"));
    let mut js = jetstream::new(client);
    js.set_timeout(REFUSAL_WAIT);
    js
}

/// Whether JetStream stored a message published on `subject` by `js` (false: refused).
async fn stored(js: &jetstream::Context, subject: &str, id: &str) -> bool {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(headers::MESSAGE_ID, id);
    match js
        .publish_with_headers(subject.to_owned(), headers, "{}".into())
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    }
}

/// Whether `js` gets a message pulling from `durable` on the patient stream (false: the pull
/// request is refused, and nothing arrives).
async fn pulls_from(js: &jetstream::Context, durable: &str) -> bool {
    let client = js.client();
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(
            format!("$JS.API.CONSUMER.MSG.NEXT.PATIENT.{durable}"),
            inbox,
            r#"{"batch":1,"expires":500000000}"#.into(),
        )
        .await
        .unwrap();
    let pulled = tokio::time::timeout(REFUSAL_WAIT, replies.next()).await;
    matches!(pulled, Ok(Some(_)))
}

async fn count_on(nats: &NatsServer, subject: &str) -> usize {
    stream::read(&nats.admin_settings(), subject)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_client_without_a_known_identity_is_refused() {
    let nats = NatsServer::single().await;
    // The right identity connects: the refusals below are about the identity alone.
    stream::connect(&nats.settings_for("registration"), "registration")
        .await
        .unwrap();

    let mut anonymous = nats.settings_for("registration");
    anonymous.nkey_seed_file = None;
    let refused = stream::connect(&anonymous, "anonymous").await;
    assert!(refused.is_err(), "a client without an nkey was let in");

    let stranger = nats.credentials().dir.join("stranger.nk");
    std::fs::write(
        &stranger,
        nkeys::KeyPair::new_user().seed().unwrap().as_bytes(),
    )
    .unwrap();
    let mut unknown = nats.settings_for("registration");
    unknown.nkey_seed_file = Some(stranger);
    let refused = stream::connect(&unknown, "stranger").await;
    assert!(
        refused.is_err(),
        "an nkey the server does not know was let in"
    );
}

/// What a client speaking plain text to `port` gets: what the server sends first (its INFO line
/// on a client port; nothing on a route port, which starts with the TLS handshake), what it
/// answers to `greeting`, and whether it then closed the connection.
async fn plain_text_session(port: u16, greeting: &str) -> (String, String, bool) {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut first = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_millis(500), socket.read(&mut first))
        .await
        .map_or(0, |read| read.unwrap_or(0));
    let first = String::from_utf8_lossy(&first[..read]).into_owned();
    let _ = socket.write_all(greeting.as_bytes()).await;
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(REFUSAL_WAIT, socket.read_to_end(&mut answer))
        .await
        .is_ok();
    (first, String::from_utf8_lossy(&answer).into_owned(), closed)
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn plain_text_is_refused_on_the_client_port() {
    let nats = NatsServer::single().await;
    let port = port_of(&nats.urls()[0]);
    let (info, answer, closed) =
        plain_text_session(port, "CONNECT {\"verbose\":false}\r\nPING\r\n").await;
    assert!(info.contains("\"tls_required\":true"), "{info}");
    assert!(
        !answer.contains("PONG"),
        "a plain-text client was served: {answer}"
    );
    assert!(closed, "the server kept a plain-text client connected");
}

#[tokio::test]
async fn a_node_without_the_clusters_certificate_cannot_join_it() {
    let nats = NatsServer::cluster().await;
    // What a node joining in plain text (or any stranger on the route port) meets.
    let (first, answer, closed) = plain_text_session(
        nats.cluster_ports()[0],
        "CONNECT {\"verbose\":false,\"name\":\"rogue\"}\r\nPING\r\n",
    )
    .await;
    assert!(
        !first.contains("\"server_id\""),
        "the route port spoke plain text: {first}"
    );
    assert!(
        !answer.contains("PONG"),
        "a plain-text route was served: {answer}"
    );
    assert!(closed, "the node kept a plain-text route connected");
    // The genuine nodes did form the cluster, over TLS.
    let routes: serde_json::Value = reqwest::get(format!("{}/routez", nats.monitor_urls()[0]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(routes["num_routes"].as_u64().unwrap_or(0) >= 2, "{routes}");
}

/// Whether a client of `rogue`'s own port hears the cluster's registrations: the administrator
/// publishes on the cluster until one arrives there, or `wait` passes.
async fn rogue_overhears(nats: &NatsServer, rogue: &RogueNode, wait: Duration) -> bool {
    let spy = eventually("the rogue node to take clients", || async {
        async_nats::connect(rogue.client_url()).await.ok()
    })
    .await;
    let mut heard = spy.subscribe("patient.>").await.unwrap();
    spy.flush().await.unwrap();
    let admin = stream::connect(&nats.admin_settings(), "admin")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        admin
            .publish("patient.register", "{}".into())
            .await
            .unwrap();
        admin.flush().await.unwrap();
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(250), heard.next()).await {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn a_services_certificate_opens_no_route() {
    let nats = NatsServer::cluster().await;
    let credentials = nats.credentials();
    // The attack works with a node's own route certificate: the rogue joins and overhears.
    let node = nats
        .rogue_node(&credentials.route_cert(), &credentials.route_key())
        .await;
    assert!(
        rogue_overhears(&nats, &node, opd_testing::PATIENCE).await,
        "a node with the route certificate did not join, so the test proves nothing\n{}",
        node.log()
    );
    drop(node);
    // With any certificate a service or the administrator holds it is refused, and hears nothing.
    join_all(["registration", "admin"].map(|identity| {
        let (nats, credentials) = (&nats, &credentials);
        async move {
            let rogue = nats
                .rogue_node(
                    &credentials.client_cert(identity),
                    &credentials.client_key(identity),
                )
                .await;
            assert!(
                !rogue_overhears(nats, &rogue, Duration::from_secs(8)).await,
                "{identity}'s client certificate opened a route\n{}",
                rogue.log()
            );
        }
    }))
    .await;
}

#[tokio::test]
async fn a_service_publishes_its_own_subjects_only() {
    let nats = server_with_stream().await;
    // A refusal shows as a missing acknowledgement: the identities are tried side by side.
    join_all(SERVICES.iter().map(|&(identity, own, _)| {
        let nats = nats.clone();
        async move {
            let js = connect_as(&nats, identity).await;
            assert!(
                stored(&js, own, &format!("{identity}-own")).await,
                "{identity} cannot publish {own}"
            );
            let mut forbidden: Vec<&str> = SERVICES
                .iter()
                .map(|(_, subject, _)| *subject)
                .filter(|subject| *subject != own)
                .collect();
            // Nor outside the book's subjects: not even on a subject that only its own
            // consumer would read (a consumer's seed could feed itself forged events there).
            forbidden.extend([
                "patient.anything",
                "audit.log",
                "patient.retry.inspection-patient-register",
            ]);
            // Release also sends patients home (`patient.discharge`); nobody else does.
            if identity != "release" {
                forbidden.push("patient.discharge");
            }
            for subject in forbidden {
                assert!(
                    !stored(&js, subject, &format!("{identity}-{subject}")).await,
                    "{identity} published {subject}"
                );
            }
        }
    }))
    .await;
    for (_, subject, _) in SERVICES {
        assert_eq!(
            count_on(&nats, subject).await,
            1,
            "only its owner's message on {subject}"
        );
    }
}

#[tokio::test]
async fn the_board_pulls_from_its_own_buckets_watch_only() {
    let nats = server_with_stream().await;
    let admin = connect_as(&nats, "admin").await;
    assert!(stored(&admin, "patient.register", "one").await);
    let board = connect_as(&nats, "board").await;
    assert!(stored(&board, "$KV.OPD_BOARD.visit.300", "board-visit").await);
    // Its watch: an ordered consumer on its bucket, pulled.
    let watch = board
        .get_stream("KV_OPD_BOARD")
        .await
        .unwrap()
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: "$KV.OPD_BOARD.>".into(),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut values = watch.messages().await.unwrap();
    let first = tokio::time::timeout(opd_testing::PATIENCE, values.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(_)))),
        "the board could not pull its own bucket's watch: {first:?}"
    );
    // Nothing else: inspection's durable on the patient stream refuses its pull.
    assert!(
        !pulls_from(&board, "inspection-patient-register").await,
        "the board pulled from inspection's consumer"
    );
}

#[tokio::test]
async fn the_board_writes_its_own_keys_only_and_nobody_else_writes_or_reads_them() {
    let nats = server_with_stream().await;
    let board = connect_as(&nats, "board").await;
    // Its projection's writes: visits.
    assert!(stored(&board, "$KV.OPD_BOARD.visit.200", "board-visit").await);
    assert!(stored(&board, "$KV.OPD_BOARD.visit.201", "board-visit-2").await);
    // Nothing else: no event, no key of another shape in its bucket.
    for subject in [
        "patient.register",
        "patient.treatment",
        "patient.release",
        "patient.discharge",
        "patient.admission",
        "$KV.OPD_BOARD.lease",
        "$KV.OPD_BOARD.called.inspection",
        "$KV.OPD_BOARD.visit.200.extra",
    ] {
        assert!(
            !stored(&board, subject, &format!("board-{subject}")).await,
            "the board published {subject}"
        );
    }
    // It may not change its bucket's stream, nor touch the patient stream's consumers.
    assert!(board.delete_stream("KV_OPD_BOARD").await.is_err());
    let bucket = board.get_stream("KV_OPD_BOARD").await.unwrap();
    assert!(bucket.purge().await.is_err(), "the board purged its bucket");
    let patients = board.get_stream("PATIENT").await.unwrap();
    assert!(
        patients
            .consumer_info("inspection-patient-register")
            .await
            .is_err(),
        "the board read inspection's consumer"
    );
    // No other service writes the board, or reads it.
    join_all(SERVICES.iter().map(|&(identity, _, _)| {
        let nats = nats.clone();
        async move {
            let js = connect_as(&nats, identity).await;
            assert!(
                !stored(&js, "$KV.OPD_BOARD.visit.202", &format!("{identity}-visit")).await,
                "{identity} wrote to the board"
            );
            assert!(
                js.get_stream("KV_OPD_BOARD").await.is_err(),
                "{identity} read the board's bucket"
            );
        }
    }))
    .await;
    let admin = connect_as(&nats, "admin").await;
    let mut bucket = admin.get_stream("KV_OPD_BOARD").await.unwrap();
    assert_eq!(
        bucket.info().await.unwrap().state.messages,
        2,
        "the bucket holds the board's two visits only"
    );
}

#[tokio::test]
async fn a_service_cannot_create_change_purge_or_delete_the_stream() {
    let nats = server_with_stream().await;
    let admin = connect_as(&nats, "admin").await;
    assert!(stored(&admin, "patient.register", "before").await);
    join_all(SERVICES.iter().map(|&(identity, _, _)| {
        let nats = nats.clone();
        async move {
            let js = connect_as(&nats, identity).await;
            // It may read the stream's information: the relay and consumers do.
            let stream = js.get_stream("PATIENT").await.unwrap();
            assert!(
                js.delete_stream("PATIENT").await.is_err(),
                "{identity} deleted the stream"
            );
            assert!(
                stream.purge().await.is_err(),
                "{identity} purged the stream"
            );
            let mut shorter = opd_nats_admin::StreamSettings::default().config("PATIENT");
            shorter.max_age = Duration::from_secs(1);
            assert!(
                js.update_stream(&shorter).await.is_err(),
                "{identity} changed the stream"
            );
            let other = jetstream::stream::Config {
                name: "SIDE".into(),
                subjects: vec!["side.>".into()],
                ..Default::default()
            };
            assert!(
                js.create_stream(other).await.is_err(),
                "{identity} created a stream"
            );
        }
    }))
    .await;
    assert_eq!(
        count_on(&nats, "patient.register").await,
        1,
        "the stream kept its message"
    );
    // The owner can do what the services could not.
    let mut stream = admin.get_stream("PATIENT").await.unwrap();
    stream.purge().await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
}

#[tokio::test]
async fn a_service_cannot_read_another_services_consumer() {
    let nats = server_with_stream().await;
    let admin = connect_as(&nats, "admin").await;
    assert!(stored(&admin, "patient.register", "one").await);
    let durable = "inspection-patient-register";
    // Inspection binds to its own consumer, which the owner created with the stream.
    let inspection = connect_as(&nats, "inspection").await;
    let own = inspection
        .get_stream("PATIENT")
        .await
        .unwrap()
        .get_consumer::<consumer::pull::Config>(durable)
        .await
        .unwrap();

    let others = SERVICES.iter().filter(|(name, _, _)| *name != "inspection");
    join_all(others.map(|&(identity, _, _)| {
        let nats = nats.clone();
        async move {
            let js = connect_as(&nats, identity).await;
            let stream = js.get_stream("PATIENT").await.unwrap();
            assert!(
                stream.consumer_info(durable).await.is_err(),
                "{identity} read inspection's consumer information"
            );
            assert!(
                !pulls_from(&js, durable).await,
                "{identity} pulled from inspection's consumer"
            );
            // Nor can it make a consumer of its own that reads the registrations.
            let ephemeral = consumer::pull::Config {
                filter_subject: "patient.register".into(),
                ..Default::default()
            };
            assert!(
                stream.create_consumer(ephemeral).await.is_err(),
                "{identity} created a consumer on the stream"
            );
        }
    }))
    .await;
    // Still there for inspection, undelivered.
    let mut messages = own.fetch().max_messages(1).messages().await.unwrap();
    let message = messages.next().await.unwrap().unwrap();
    message.ack().await.unwrap();
}

#[tokio::test]
async fn a_service_cannot_create_or_change_a_consumer_not_even_its_own() {
    let nats = server_with_stream().await;
    let admin = connect_as(&nats, "admin").await;
    assert!(stored(&admin, "patient.register", "one").await);
    assert!(stored(&admin, "patient.treatment", "two").await);
    join_all(DURABLES.iter().map(|durable| {
        let nats = nats.clone();
        async move {
            let identity = durable.name.split('-').next().unwrap();
            let js = connect_as(&nats, identity).await;
            let stream = js.get_stream("PATIENT").await.unwrap();
            // It binds to its own and reads its information, as its consumer does.
            let mut own = stream
                .get_consumer::<consumer::pull::Config>(durable.name)
                .await
                .unwrap();
            assert_eq!(reads(&own.info().await.unwrap().config), durable.subjects);
            // Widening its own filter to every subject, from the stream's start, is refused...
            let everything = consumer::pull::Config {
                durable_name: Some(durable.name.into()),
                filter_subject: "patient.>".into(),
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            };
            assert!(
                stream.create_consumer(everything.clone()).await.is_err(),
                "{identity} widened its own consumer to patient.>"
            );
            // ...and so is a second durable of its own making.
            let other = consumer::pull::Config {
                durable_name: Some(format!("{identity}-everything")),
                ..everything
            };
            assert!(
                stream.create_consumer(other).await.is_err(),
                "{identity} created a durable consumer"
            );
        }
    }))
    .await;
    // The owner's view: each consumer still reads its one subject, and there are no others.
    let stream = admin.get_stream("PATIENT").await.unwrap();
    for durable in DURABLES {
        let live = stream
            .get_consumer::<consumer::pull::Config>(durable.name)
            .await
            .unwrap();
        let live = reads(&live.cached_info().config);
        assert_eq!(live, durable.subjects, "{} was changed", durable.name);
    }
    let names: Vec<String> = stream
        .consumer_names()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(names.len(), DURABLES.len(), "{names:?}");
}

/// The subjects a consumer reads, whether it names one or several.
fn reads(config: &consumer::Config) -> Vec<String> {
    let mut subjects = config.filter_subjects.clone();
    if !config.filter_subject.is_empty() {
        subjects.push(config.filter_subject.clone());
    }
    subjects
}

#[tokio::test]
async fn a_service_cannot_read_another_services_replies() {
    let nats = server_with_stream().await;
    let spy = stream::connect(&nats.settings_for("treatment"), "treatment")
        .await
        .unwrap();
    let mut theirs = spy.subscribe("_INBOX.inspection.>").await.unwrap();
    let mut all = spy.subscribe("_INBOX.>").await.unwrap();
    spy.flush().await.unwrap();

    // Inspection asks JetStream for the stream's information: the answer comes to its inbox.
    let inspection = connect_as(&nats, "inspection").await;
    let mut stream = inspection.get_stream("PATIENT").await.unwrap();
    stream.info().await.unwrap();

    let overheard = tokio::time::timeout(REFUSAL_WAIT, async {
        tokio::select! {
            message = theirs.next() => message,
            message = all.next() => message,
        }
    })
    .await;
    assert!(
        !matches!(overheard, Ok(Some(_))),
        "treatment read a reply meant for inspection"
    );
}

#[tokio::test]
async fn a_forged_event_from_a_stolen_identity_never_reaches_a_consumer() {
    let nats = server_with_stream().await;
    let inspection = TestApp::builder(&INSPECTION)
        .nats(nats.clone())
        .spawn()
        .await;
    // The thief holds treatment's seed and forges a registration, and a retry of one.
    let stolen = connect_as(&nats, "treatment").await;
    let forged = PatientRegistered {
        id: 424_242.try_into().unwrap(),
        token: 1,
        site: opd_shared::domain::Site::hospital(),
    };
    for subject in [
        PatientRegistered::SUBJECT,
        "patient.retry.inspection-patient-register",
    ] {
        let meta = new_meta::<PatientRegistered>();
        let mut headers = meta.to_headers();
        headers.insert(headers::MESSAGE_ID, meta.id.to_string().as_str());
        let sent = match stolen
            .publish_with_headers(
                subject,
                headers,
                serde_json::to_vec(&forged).unwrap().into(),
            )
            .await
        {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        assert!(!sent, "JetStream stored a forged event on {subject}");
    }
    // A genuine registration after it goes through, so the consumer was listening all along.
    let genuine = PatientRegistered {
        id: 515_151.try_into().unwrap(),
        token: 2,
        site: opd_shared::domain::Site::hospital(),
    };
    publish_as(&nats, "registration", &genuine).await;
    let pending = inspection
        .list_until("/opd/inspection/pending", "the genuine patient", |list| {
            !list.is_empty()
        })
        .await;
    let ids: Vec<i64> = pending.iter().filter_map(|p| p["id"].as_i64()).collect();
    assert_eq!(
        ids,
        [515_151],
        "only the genuine patient waits for inspection"
    );
    assert_eq!(
        inspection
            .count("select count(*) from processed_events")
            .await,
        1
    );
}

async fn publish_as<E: Event>(nats: &NatsServer, identity: &str, event: &E) {
    let js = connect_as(nats, identity).await;
    let meta = new_meta::<E>();
    let mut headers = meta.to_headers();
    headers.insert(headers::MESSAGE_ID, meta.id.to_string().as_str());
    let ack = js
        .publish_with_headers(
            E::SUBJECT,
            headers,
            serde_json::to_vec(event).unwrap().into(),
        )
        .await
        .unwrap();
    ack.await.unwrap();
}

#[tokio::test]
async fn mutual_tls_asks_every_client_for_a_certificate() {
    let nats = NatsServer::single_with_mutual_tls().await;
    // With its certificate (what settings_for gives on this server) a service connects...
    let with: NatsSettings = nats.settings_for("registration");
    assert!(with.tls.cert_file.is_some());
    stream::connect(&with, "registration").await.unwrap();
    // ...and with its valid nkey but no certificate, it is refused.
    let mut without = with.clone();
    without.tls.cert_file = None;
    without.tls.key_file = None;
    assert!(
        stream::connect(&without, "registration").await.is_err(),
        "a client without a certificate was let in"
    );
    // The service itself runs on it, end to end.
    let app = TestApp::builder(&INSPECTION)
        .nats(Arc::new(nats))
        .spawn()
        .await;
    let event = PatientRegistered {
        id: 777_001.try_into().unwrap(),
        token: 1,
        site: opd_shared::domain::Site::hospital(),
    };
    app.publish(&event).await;
    eventually("the event handled over mutual TLS", || async {
        (app.count("select count(*) from processed_events").await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_event_that_says_it_comes_from_another_producer_is_parked() {
    let inspection = TestApp::spawn(&INSPECTION).await;
    let registered = |id: i64| PatientRegistered {
        id: id.try_into().unwrap(),
        token: 1,
        site: opd_shared::domain::Site::hospital(),
    };
    // On registration's subject, but claiming treatment as its producer, or another type.
    let mut foreign_source = new_meta::<PatientRegistered>();
    foreign_source.source = "/opd/treatment".into();
    let mut foreign_type = new_meta::<PatientRegistered>();
    foreign_type.event_type = "opd.patient.sent-for-treatment.v1".into();
    let settings = &inspection.settings.nats;
    stream::publish_meta(settings, &registered(801), &foreign_source).await;
    stream::publish_meta(settings, &registered(802), &foreign_type).await;
    // The genuine event after them is applied.
    inspection.publish(&registered(803)).await;
    let pending = inspection
        .list_until("/opd/inspection/pending", "the genuine patient", |list| {
            !list.is_empty()
        })
        .await;
    let ids: Vec<i64> = pending.iter().filter_map(|p| p["id"].as_i64()).collect();
    assert_eq!(ids, [803]);
    eventually("both foreign events parked", || async {
        (inspection
            .count("select count(*) from dead_letters where reason like 'foreign event%'")
            .await
            == 2)
            .then_some(())
    })
    .await;
    assert_eq!(
        inspection
            .count("select count(*) from processed_events")
            .await,
        1
    );
}

/// Whether `subscription` receives a message within [`REFUSAL_WAIT`].
async fn hears(subscription: &mut async_nats::Subscriber) -> bool {
    tokio::time::timeout(REFUSAL_WAIT, subscription.next())
        .await
        .is_ok_and(|message| message.is_some())
}

/// Whether any of `subscriptions` receives a message within [`REFUSAL_WAIT`].
async fn hears_anything(subscriptions: Vec<async_nats::Subscriber>) -> bool {
    let mut all = futures::stream::select_all(subscriptions);
    matches!(
        tokio::time::timeout(REFUSAL_WAIT, all.next()).await,
        Ok(Some(_))
    )
}

#[tokio::test]
async fn a_service_cannot_answer_for_another_service() {
    let nats = server_with_stream().await;
    let spy = stream::connect(&nats.settings_for("treatment"), "treatment")
        .await
        .unwrap();
    // Treatment tries to take inspection's requests: in inspection's queue group, in its own,
    // in none, and the Services API's questions addressed to inspection.
    let subscriptions = vec![
        spy.queue_subscribe("opd.inspection.patient", "inspection".into())
            .await
            .unwrap(),
        spy.subscribe("opd.inspection.patient").await.unwrap(),
        spy.queue_subscribe("opd.where", "inspection".into())
            .await
            .unwrap(),
        spy.subscribe("opd.where").await.unwrap(),
        spy.subscribe("$SRV.PING.inspection").await.unwrap(),
        spy.subscribe("$SRV.INFO.inspection.>").await.unwrap(),
    ];
    // Its own subjects it may take, which shows the subscriptions above were really made.
    let mut own = spy
        .queue_subscribe("opd.where", "treatment".into())
        .await
        .unwrap();
    spy.flush().await.unwrap();

    let admin = stream::connect(&nats.admin_settings(), "admin")
        .await
        .unwrap();
    for subject in [
        "opd.inspection.patient",
        "opd.where",
        "$SRV.PING.inspection",
        "$SRV.INFO.inspection.x",
    ] {
        admin
            .publish_with_reply(subject, "_INBOX.admin.x", r#"{"id":1}"#.into())
            .await
            .unwrap();
    }
    admin.flush().await.unwrap();
    assert!(
        hears(&mut own).await,
        "treatment did not even get the broadcast in its own queue group"
    );
    assert!(
        !hears_anything(subscriptions).await,
        "treatment took a request meant for inspection"
    );
}

#[tokio::test]
async fn a_service_answers_only_on_the_reply_subject_it_was_given() {
    let nats = server_with_stream().await;
    let registration = stream::connect(&nats.settings_for("registration"), "registration")
        .await
        .unwrap();
    let inbox = registration
        .subscribe("_INBOX.registration.>")
        .await
        .unwrap();
    let mut listener = registration
        .queue_subscribe("opd.where", "registration".into())
        .await
        .unwrap();
    registration.flush().await.unwrap();
    // The listener hears the broadcast question when registration asks it.
    registration
        .publish("opd.where", r#"{"id":1}"#.into())
        .await
        .unwrap();
    assert!(
        hears(&mut listener).await,
        "registration's own question did not arrive"
    );

    // Inspection forges an answer into registration's inbox unasked, and asks the broadcast
    // question itself (only registration may).
    let inspection = stream::connect(&nats.settings_for("inspection"), "inspection")
        .await
        .unwrap();
    inspection
        .publish(
            "_INBOX.registration.forged",
            r#"{"service":"release"}"#.into(),
        )
        .await
        .unwrap();
    inspection
        .publish("opd.where", r#"{"id":1}"#.into())
        .await
        .unwrap();
    inspection.flush().await.unwrap();
    assert!(
        !hears_anything(vec![inbox, listener]).await,
        "inspection wrote into registration's inbox, or asked the broadcast question"
    );
}

#[tokio::test]
async fn a_service_beats_for_itself_only() {
    let nats = server_with_stream().await;
    let js = connect_as(&nats, "treatment").await;
    // The presence stream takes every heartbeat subject, so a publish that reaches it is
    // acknowledged: treatment's own is, inspection's is not.
    assert!(
        stored(&js, "opd.heartbeat.treatment.abc", "beat-own").await,
        "treatment cannot publish its own heartbeat"
    );
    assert!(
        !stored(&js, "opd.heartbeat.inspection.abc", "beat-forged").await,
        "treatment published a heartbeat for inspection"
    );
}

#[tokio::test]
async fn a_service_cannot_send_control_commands() {
    let nats = server_with_stream().await;
    let inspection = stream::connect(&nats.settings_for("inspection"), "inspection")
        .await
        .unwrap();
    let mut listener = inspection
        .subscribe("opd.control.inspection")
        .await
        .unwrap();
    inspection.flush().await.unwrap();

    // Treatment commands inspection, and itself.
    let treatment = stream::connect(&nats.settings_for("treatment"), "treatment")
        .await
        .unwrap();
    let mut itself = treatment.subscribe("opd.control.treatment").await.unwrap();
    treatment.flush().await.unwrap();
    for target in ["opd.control.inspection", "opd.control.treatment"] {
        treatment
            .publish(target, r#"{"command":"maintenance","on":true}"#.into())
            .await
            .unwrap();
    }
    treatment.flush().await.unwrap();
    assert!(
        tokio::time::timeout(
            REFUSAL_WAIT,
            futures::future::select(listener.next(), itself.next())
        )
        .await
        .is_err(),
        "treatment sent a control command"
    );

    // The administrator's command does arrive, which shows the listener was listening.
    let admin = stream::connect(&nats.admin_settings(), "admin")
        .await
        .unwrap();
    admin
        .publish("opd.control.inspection", r#"{"command":"resume"}"#.into())
        .await
        .unwrap();
    admin.flush().await.unwrap();
    assert!(
        hears(&mut listener).await,
        "the administrator's command did not arrive"
    );
}

#[tokio::test]
async fn a_service_cannot_hear_another_services_control_commands() {
    let nats = server_with_stream().await;
    let spy = stream::connect(&nats.settings_for("treatment"), "treatment")
        .await
        .unwrap();
    let overheard = vec![
        spy.subscribe("opd.control.inspection").await.unwrap(),
        spy.subscribe("opd.control.inspection.abc").await.unwrap(),
        spy.subscribe("opd.control.>").await.unwrap(),
    ];
    let mut own = spy.subscribe("opd.control.treatment.abc").await.unwrap();
    spy.flush().await.unwrap();
    let admin = stream::connect(&nats.admin_settings(), "admin")
        .await
        .unwrap();
    for subject in [
        "opd.control.inspection",
        "opd.control.inspection.abc",
        "opd.control.treatment.abc",
    ] {
        admin
            .publish(subject, r#"{"command":"resume"}"#.into())
            .await
            .unwrap();
    }
    admin.flush().await.unwrap();
    assert!(
        hears(&mut own).await,
        "treatment did not hear even its own command"
    );
    assert!(
        !hears_anything(overheard).await,
        "treatment heard a command for inspection"
    );
}

#[tokio::test]
async fn a_service_pauses_its_own_consumer_only() {
    let nats = server_with_stream().await;
    let treatment = connect_as(&nats, "treatment").await;
    let stream = treatment.get_stream_no_info("PATIENT").await.unwrap();
    let until = async_nats::datetime::add_std_duration(
        async_nats::datetime::now(),
        Duration::from_secs(600),
    )
    .unwrap();
    assert!(
        stream
            .pause_consumer("treatment-patient-treatment", until)
            .await
            .is_ok_and(|paused| paused.paused),
        "treatment cannot pause its own consumer"
    );
    stream
        .resume_consumer("treatment-patient-treatment")
        .await
        .unwrap();
    assert!(
        stream
            .pause_consumer("inspection-patient-register", until)
            .await
            .is_err(),
        "treatment paused inspection's consumer"
    );
    let admin = connect_as(&nats, "admin").await;
    let info = admin
        .get_stream("PATIENT")
        .await
        .unwrap()
        .consumer_info("inspection-patient-register")
        .await
        .unwrap();
    assert!(!info.paused, "inspection's consumer is paused");
}

/// A message id no other test uses.
fn uuid_like() -> String {
    opd_testing::unique_name("id")
}

/// A hospital with its stream, a clinic's server linked to it as a leaf node, the clinic's own
/// stream, and the hospital's stream sourcing it: the second site as `opd-nats` sets it up.
async fn hospital_and_clinic() -> (Arc<NatsServer>, opd_testing::LeafServer) {
    let hospital = server_with_stream().await;
    let clinic = hospital.clinic("clinic").await;
    let admin_at_clinic = stream::as_admin(&clinic.settings_for("admin"));
    opd_nats_admin::site::create_site_stream(
        &admin_at_clinic,
        &stream::settings_for(&admin_at_clinic),
        opd_testing::PATIENCE,
    )
    .await
    .unwrap();
    let site = "clinic".parse().unwrap();
    opd_nats_admin::site::link(&hospital.admin_settings(), &site, opd_testing::PATIENCE)
        .await
        .unwrap();
    eventually("the clinic's link to be up", || async {
        (hospital.leaf_connections().await >= 1).then_some(())
    })
    .await;
    (hospital, clinic)
}

#[tokio::test]
async fn a_sites_link_carries_its_registrations_and_nothing_else() {
    let (hospital, clinic) = hospital_and_clinic().await;
    // What the link is for: a registration stored at the clinic reaches the hospital's stream.
    let at_clinic = stream::connect(&clinic.settings_for("registration"), "registration")
        .await
        .unwrap();
    assert!(stored(&jetstream::new(at_clinic), "patient.register", "clinic-1").await);
    eventually("the clinic's registration at the hospital", || async {
        (count_on(&hospital, "patient.register").await == 1).then_some(())
    })
    .await;

    // The hospital's events do not enter the clinic: its stream would hand a hospital
    // registration back to the hospital as a second one.
    let at_hospital = connect_as(&hospital, "registration").await;
    assert!(stored(&at_hospital, "patient.register", "hospital-1").await);
    tokio::time::sleep(REFUSAL_WAIT).await;
    let admin_at_clinic = stream::jetstream(&stream::as_admin(&clinic.settings_for("admin")))
        .await
        .unwrap();
    let clinic_stream = admin_at_clinic.get_stream("PATIENT").await.unwrap();
    assert_eq!(
        clinic_stream.cached_info().state.messages,
        1,
        "a hospital event was stored at the clinic"
    );

    // Nothing published at the clinic reaches the hospital as a message: not an event (the
    // stream would store it beside the sourced copy), not a request to a service, not a
    // control command. The clinic's administrator is the most any client there can be.
    let inspection = stream::connect(&hospital.settings_for("inspection"), "inspection")
        .await
        .unwrap();
    let listening = vec![
        inspection
            .queue_subscribe("opd.where", "inspection".into())
            .await
            .unwrap(),
        inspection
            .subscribe("opd.control.inspection")
            .await
            .unwrap(),
    ];
    inspection.flush().await.unwrap();
    let admin_client = stream::connect(&stream::as_admin(&clinic.settings_for("admin")), "admin")
        .await
        .unwrap();
    for subject in [
        "patient.register",
        "patient.treatment",
        "opd.where",
        "opd.control.inspection",
    ] {
        admin_client
            .publish(subject, r#"{"id":1,"token":1}"#.into())
            .await
            .unwrap();
    }
    admin_client.flush().await.unwrap();
    assert!(
        !hears_anything(listening).await,
        "a message from the clinic reached a hospital service"
    );
    // The clinic's stream took the `patient.register` as a clinic registration, and the
    // hospital has it once, from the source; nothing else arrived.
    assert_eq!(count_on(&hospital, "patient.register").await, 3);
    assert_eq!(count_on(&hospital, "patient.treatment").await, 0);

    // The link's identity opens a link and nothing else: as a client it is refused.
    let refused = stream::connect(&hospital.settings_for("clinic"), "clinic").await;
    assert!(
        refused.is_err(),
        "the clinic's link identity connected as a client"
    );
}

#[tokio::test]
async fn the_legacy_leaf_reads_the_books_events_and_writes_nothing() {
    let hospital = server_with_stream().await;
    let legacy = hospital.legacy_leaf().await;
    eventually("the legacy leaf's link to be up", || async {
        (hospital.leaf_connections().await >= 1).then_some(())
    })
    .await;
    // A client as the book's services are: plain core NATS, no TLS, no credentials.
    let book = async_nats::connect(legacy.url()).await.unwrap();
    let mut registrations = book.subscribe("patient.register").await.unwrap();
    let mut admissions = book.subscribe("patient.admission").await.unwrap();
    let mut others = vec![
        book.subscribe("patient.discharge").await.unwrap(),
        book.subscribe("opd.>").await.unwrap(),
        book.subscribe("$SRV.>").await.unwrap(),
        book.subscribe("_INBOX.>").await.unwrap(),
    ];
    book.flush().await.unwrap();

    // It sees the platform's events on the book's subjects (once the link has carried its
    // interest to the hospital).
    let registration = connect_as(&hospital, "registration").await;
    let deadline = tokio::time::Instant::now() + opd_testing::PATIENCE;
    let heard = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no registration reached the legacy leaf"
        );
        let id = uuid_like();
        assert!(stored(&registration, "patient.register", &id).await);
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(500), registrations.next()).await
        {
            break message;
        }
    };
    assert_eq!(heard.payload.as_ref(), b"{}");
    let release = connect_as(&hospital, "release").await;
    assert!(stored(&release, "patient.admission", "legacy-admission").await);
    assert!(
        hears(&mut admissions).await,
        "no admission at the legacy leaf"
    );

    // It sees nothing else: not the events the book does not have, not the services' traffic.
    assert!(stored(&release, "patient.discharge", "legacy-discharge").await);
    let admin = stream::connect(&hospital.admin_settings(), "admin")
        .await
        .unwrap();
    admin
        .publish("opd.heartbeat.inspection.x", "{}".into())
        .await
        .unwrap();
    admin
        .publish_with_reply("opd.where", "_INBOX.admin.x", r#"{"id":1}"#.into())
        .await
        .unwrap();
    admin.flush().await.unwrap();
    let others = std::mem::take(&mut others);
    assert!(
        !hears_anything(others).await,
        "the legacy leaf heard more than the book's events"
    );

    // And what it publishes never reaches the platform: events, requests, the JetStream API.
    let before = count_on(&hospital, "patient.>").await;
    for subject in [
        "patient.register",
        "patient.treatment",
        "patient.release",
        "opd.where",
    ] {
        book.publish(subject, r#"{"id":1,"token":1}"#.into())
            .await
            .unwrap();
    }
    let asked = tokio::time::timeout(
        REFUSAL_WAIT,
        book.request("$JS.API.STREAM.INFO.PATIENT", "".into()),
    )
    .await;
    assert!(
        !matches!(asked, Ok(Ok(_))),
        "the legacy leaf reached the hospital's JetStream API"
    );
    book.flush().await.unwrap();
    tokio::time::sleep(REFUSAL_WAIT).await;
    assert_eq!(
        count_on(&hospital, "patient.>").await,
        before,
        "a publish at the legacy leaf reached the stream"
    );
}
