use opd_testing::Method;
use serde_json::json;

use crate::helpers::{PENDING, RECORD, builder, pending_count, registered, spawn_app};

#[tokio::test]
async fn registered_patients_wait_in_token_order_and_leave_when_inspected() {
    let app = builder().settings(opd_testing::book_curl).spawn().await;
    registered(&app, 300, 2).await;
    registered(&app, 200, 1).await;
    registered(&app, 400, 3).await;
    let pending = pending_count(&app, 3).await;
    assert_eq!(
        pending,
        vec![
            json!({"id": 200, "token": 1, "site": "hospital"}),
            json!({"id": 300, "token": 2, "site": "hospital"}),
            json!({"id": 400, "token": 3, "site": "hospital"})
        ]
    );

    // The book's curl command, as printed.
    let answer = app
        .curl_expect(
            Method::POST,
            RECORD,
            r#"{"id":200, "time":"2021/07/12 10:21 AM", "observations":"ABC Syncrome", "medication":"XYZ x 3", "tests":"FBT, UC", "notes":"possible Covid-19"}"#,
            201,
        )
        .await;
    let sent =
        json!({"id":200,"medication":"XYZ x 3","tests":"FBT, UC","notes":"possible Covid-19"});
    assert_eq!(answer, sent);

    assert_eq!(
        app.get_expect(PENDING, 200).await,
        json!([{"id": 300, "token": 2, "site": "hospital"}, {"id": 400, "token": 3, "site": "hospital"}])
    );

    let events = app.events_until("patient.treatment", 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, sent);
    assert_eq!(
        events[0].0.get("ce-type").map(|v| v.as_str()),
        Some("opd.patient.sent-for-treatment.v1")
    );
}

#[tokio::test]
async fn history_lists_inspections_oldest_first() {
    let app = spawn_app().await;
    let record = |time: &str| json!({"id": 200, "time": time, "observations": "ABC Syncrome"});
    registered(&app, 200, 1).await;
    pending_count(&app, 1).await;
    app.post_expect(RECORD, &record("2021/07/12 10:21 AM"), 201)
        .await;
    registered(&app, 200, 2).await;
    pending_count(&app, 1).await;
    app.post_expect(RECORD, &record("2021/07/13 09:00 AM"), 201)
        .await;

    assert_eq!(
        app.get_expect("/opd/inspection/history/200", 200).await,
        json!([
            {"id": 200, "time": "2021/07/12 10:21 AM", "observations": "ABC Syncrome"},
            {"id": 200, "time": "2021/07/13 09:00 AM", "observations": "ABC Syncrome"}
        ])
    );
    let home = app.get("/opd/inspection/").await;
    assert_eq!(home.text().await.unwrap(), "Inspection Service v0.1.0\n");
}

#[tokio::test]
async fn one_inspection_takes_only_the_earliest_waiting_visit_off_the_list() {
    let app = spawn_app().await;
    // Patient 300 holds two tokens today: two visits.
    registered(&app, 300, 2).await;
    registered(&app, 300, 3).await;
    pending_count(&app, 2).await;
    app.post_expect(RECORD, &crate::helpers::inspection(300), 201)
        .await;
    assert_eq!(
        pending_count(&app, 1).await,
        [json!({"id": 300, "token": 3, "site": "hospital"})]
    );
    app.assert_handled_once(2).await;
}

#[tokio::test]
async fn a_long_queue_comes_a_page_at_a_time_with_a_link_to_the_next() {
    let app = spawn_app().await;
    for token in 1..=5 {
        registered(&app, 100 + token, token).await;
    }
    pending_count(&app, 5).await;

    let mut next = Some(format!("{PENDING}?limit=2"));
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(path) = next.take() {
        let response = app.get(&path).await;
        assert_eq!(response.status(), 200);
        next = response
            .headers()
            .get("link")
            .map(|link| link.to_str().unwrap().to_owned())
            .map(|link| {
                assert!(link.ends_with(r#">; rel="next""#), "{link}");
                link.trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_owned()
            });
        let page: Vec<serde_json::Value> = response.json().await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(
            page.into_iter()
                .map(|entry| entry["token"].as_i64().unwrap()),
        );
        pages += 1;
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5], "each entry once, in token order");
    assert_eq!(pages, 3);

    // The default page holds a small queue whole, with no link: the book's answer.
    let whole = app.get(PENDING).await;
    assert!(whole.headers().get("link").is_none());

    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "after=yesterday",
        "after=2026-11-22",
        "patient=0",
        "patient=two",
        "patient=9007199254740992",
    ] {
        let problem =
            opd_testing::expect_problem(app.get(&format!("{PENDING}?{bad}")).await, 400).await;
        assert_eq!(
            problem["type"], "/problems/invalid-query-parameter",
            "{bad}"
        );
    }
}

#[tokio::test]
async fn one_patient_is_found_however_many_wait_before_them() {
    let app = spawn_app().await;
    // More than a default page of other patients first, then patient 300's two visits.
    for token in 1..=101 {
        registered(&app, 1000 + token, token).await;
    }
    registered(&app, 300, 102).await;
    registered(&app, 300, 103).await;
    let theirs = format!("{PENDING}?patient=300");
    let found = app
        .list_until(&theirs, "patient 300's two visits", |list| list.len() == 2)
        .await;
    assert_eq!(
        found,
        vec![
            json!({"id": 300, "token": 102, "site": "hospital"}),
            json!({"id": 300, "token": 103, "site": "hospital"})
        ]
    );
    let first_page = app.get_expect(PENDING, 200).await;
    assert!(
        first_page
            .as_array()
            .is_some_and(|page| page.len() == 100 && page.iter().all(|entry| entry["id"] != 300)),
        "without the filter, patient 300 is past the first page"
    );

    // Paging one patient's entries keeps the filter in the next page's link.
    let response = app.get(&format!("{theirs}&limit=1")).await;
    let link = response.headers()["link"].to_str().unwrap().to_owned();
    assert!(link.contains("patient=300"), "{link}");
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    assert_eq!(
        app.get_expect(next, 200).await,
        json!([{"id": 300, "token": 103, "site": "hospital"}])
    );
    assert_eq!(
        app.get_expect(&format!("{PENDING}?patient=404"), 200).await,
        json!([])
    );
}

#[tokio::test]
async fn an_inspection_reads_its_patients_entries_not_the_whole_waiting_list() {
    let mut app = spawn_app().await;
    // 20,000 others wait before patient 77. The statistics put hundreds of visits on each
    // patient, as a whole benchmark run left them: the planner then read the queue's index
    // from its start to find one patient's visit, every inspection.
    app.execute(
        "insert into visits (registered_on, token, patient_id, registered_at)
         select current_date, g, 100000 + g, now() from generate_series(1, 20000) g;
         insert into visits (registered_on, token, patient_id, registered_at)
         values (current_date, 20001, 77, now());
         alter table visits alter column patient_id set (n_distinct = 50);
         analyze visits",
    )
    .await;
    app.post_expect(RECORD, &crate::helpers::inspection(77), 201)
        .await;
    let read = app
        .stop_and_count_index_reads("visits", "visits_patient")
        .await;
    assert!(
        read <= 10,
        "{read} index entries read to inspect one patient"
    );
}
