use std::time::Duration;

use opd_testing::{eventually, expect_problem};
use serde_json::json;

use crate::helpers::{
    REGISTER, builder, hold_the_counter, patient, register, spawn_app, started,
    until_a_request_waits_on_the_counter,
};

#[tokio::test]
async fn unknown_patients_are_404() {
    let app = spawn_app().await;
    expect_problem(app.get("/opd/patient/view/404").await, 404).await;
    expect_problem(app.put("/opd/patient/update", &patient(404)).await, 404).await;
    expect_problem(app.get("/opd/patient/token/404").await, 404).await;
}

#[tokio::test]
async fn a_second_registration_of_the_same_patient_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    register(&app, 200).await;
    let mut changed = patient(200);
    changed["full_name"] = json!("someone else");
    let problem = expect_problem(app.post(REGISTER, &changed).await, 409).await;
    assert!(problem["detail"].as_str().unwrap().contains("200"));
    let view = app.get_expect("/opd/patient/view/200", 200).await;
    assert_eq!(view["full_name"], "chanaka fernando");
    // Only the first registration produced an event.
    assert_eq!(app.count("select count(*) from outbox").await, 1);
}

#[tokio::test]
async fn a_database_outage_is_503_and_the_service_recovers() {
    let app = spawn_app().await;
    app.database.take_offline().await;
    expect_problem(app.post(REGISTER, &patient(1)).await, 503).await;
    expect_problem(app.get("/readyz").await, 503).await;

    app.database.bring_online().await;
    let status = eventually("registration to work again", || async {
        let status = app.post(REGISTER, &patient(1)).await.status();
        (status != 503).then_some(status)
    })
    .await;
    assert_eq!(status, 201);
    // Registration commits on connections of its own: the request pool, which `/readyz`
    // checks, may find one more connection the outage broke before it is ready again.
    eventually("readiness to return", || async {
        (app.get("/readyz").await.status() == 200).then_some(())
    })
    .await;
    // The relay, which failed all through the outage, publishes again.
    let events = app.events_until("patient.register", 1).await;
    assert_eq!(events[0].1["id"], 1);
}

#[tokio::test]
async fn without_nats_the_service_stays_ready_and_says_that_events_wait() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let nats_is = |expected: &'static str| {
        let app = &app;
        async move {
            eventually(&format!("/readyz to report nats {expected}"), || async {
                let answer = app.get("/readyz").await;
                // Ready all along: writes succeed, their events wait in the outbox.
                assert_eq!(answer.status(), 200);
                let body: serde_json::Value = answer.json().await.ok()?;
                (body["nats"] == expected).then_some(())
            })
            .await;
        }
    };
    nats_is("up").await;

    app.nats.kill_all().await;
    nats_is("down").await;
    app.post_expect(REGISTER, &patient(1), 201).await;
    // Liveness does not depend on NATS either: restarting the process would not help.
    assert_eq!(app.get("/healthz").await.status(), 200);

    app.nats.restart_all().await;
    nats_is("up").await;
}

#[tokio::test]
async fn a_stuck_database_is_503_not_a_hung_request() {
    let app = started(
        builder()
            .settings(|settings| settings.database.statement_timeout = Duration::from_millis(500)),
    )
    .await;
    // Another session holds the table: every insert into it waits.
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx_lock_patients(&mut blocker).await;

    let started = std::time::Instant::now();
    expect_problem(app.post(REGISTER, &patient(1)).await, 503).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    blocker.rollback().await.unwrap();
    register(&app, 1).await;
}

async fn sqlx_lock_patients(tx: &mut sqlx::PgConnection) {
    sqlx::query("lock table patients in access exclusive mode")
        .execute(tx)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_request_stuck_past_the_timeout_is_503_and_does_not_hold_the_client() {
    let app = started(builder().settings(|settings| {
        settings.http.request_timeout = Duration::from_millis(300);
    }))
    .await;
    register(&app, 1).await;
    let holder = hold_the_counter(&app).await;
    let started = std::time::Instant::now();
    let problem = expect_problem(app.post(REGISTER, &patient(2)).await, 503).await;
    assert_eq!(problem["type"], "/problems/timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The statement was already in PostgreSQL: it completes, whole (patient and event
    // together), once the row is free. The problem document says so.
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("may still complete")
    );
    holder.commit().await.unwrap();
    eventually("the abandoned registration to complete, whole", || async {
        let patients = app.count("select count(*) from patients").await;
        let events = app.count("select count(*) from outbox").await;
        (patients == 2 && events == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_request_over_the_concurrency_limit_is_refused_at_once() {
    let app = started(builder().settings(|settings| {
        settings.http.max_concurrent_requests = 1;
    }))
    .await;
    register(&app, 1).await;
    let holder = hold_the_counter(&app).await;
    let first = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url(REGISTER));
        async move { client.post(url).json(&patient(2)).send().await.unwrap() }
    });
    until_a_request_waits_on_the_counter(&app).await;
    let second = app.get("/opd/patient/view/1").await;
    assert_eq!(second.headers()["retry-after"], "1");
    let problem = expect_problem(second, 503).await;
    assert_eq!(problem["type"], "/problems/overloaded");

    holder.commit().await.unwrap();
    assert_eq!(first.await.unwrap().status(), 201);
    app.get_expect("/opd/patient/view/1", 200).await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = started(builder().settings(|settings| {
        settings.http.header_read_timeout = Duration::from_millis(500);
    }))
    .await;
    let address = app.url("").trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    // The request line and one header, and then nothing: the blank line never comes.
    slow.write_all(b"GET /opd/patient/ HTTP/1.1\r\nHost: opd\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(
        closed.is_ok(),
        "the connection was still open 5 s later (header_read_timeout is 500 ms)"
    );
    // A client that sends its request in time is served as ever.
    let home = app.get("/opd/patient/").await;
    assert_eq!(home.status(), 200);
}

/// Open file descriptors of this (the test) process: its own sockets and the service's.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

#[tokio::test]
async fn idle_connections_are_capped_and_cut_while_requests_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const IDLE: usize = 2_000;
    const PREFACE_ONLY: usize = 100;
    const CAP: usize = 500;
    let app = started(builder().settings(|settings| {
        settings.http.header_read_timeout = Duration::from_secs(1);
        settings.http.max_connections = CAP;
        settings.http.max_concurrent_requests = 100;
    }))
    .await;
    let address = app.url("").trim_start_matches("http://").to_owned();
    let before = open_descriptors();
    // Connections that send nothing, and some that send only HTTP/2's preface; each waits for
    // the service to close it (EOF or reset) and says how long that took.
    let sockets: Vec<_> = (0..IDLE + PREFACE_ONLY)
        .map(|i| {
            let address = address.clone();
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let Ok(mut socket) = tokio::net::TcpStream::connect(&address).await else {
                    return Some(started.elapsed());
                };
                if i >= IDLE {
                    let _ = socket.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
                }
                let mut rest = Vec::new();
                tokio::time::timeout(Duration::from_secs(60), socket.read_to_end(&mut rest))
                    .await
                    .ok()
                    .map(|_| started.elapsed())
            })
        })
        .collect();
    // The service holds at most CAP of them at once: the rest wait in the kernel's queue.
    let mut most = 0;
    for _ in 0..40 {
        most = most.max(open_descriptors().saturating_sub(before));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        most <= IDLE + PREFACE_ONLY + CAP + 300,
        "{most} descriptors opened for {} client sockets: the service held more than {CAP}",
        IDLE + PREFACE_ONLY
    );
    // A client that sends its request is served meanwhile, behind the idle ones.
    let home = tokio::time::timeout(Duration::from_secs(30), app.get("/opd/patient/"))
        .await
        .expect("a request was not served while idle connections waited");
    assert_eq!(home.status(), 200);
    // Every idle connection was closed by the service.
    let mut slowest = Duration::ZERO;
    for socket in sockets {
        let closed = socket.await.unwrap();
        let took = closed.expect("an idle connection was still open after 60 s");
        slowest = slowest.max(took);
    }
    eprintln!("the last of {IDLE} idle connections was closed after {slowest:?}");
}
