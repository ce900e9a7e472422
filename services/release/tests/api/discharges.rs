use opd_shared::domain::Disposition;
use opd_testing::Method;
use serde_json::json;

use crate::helpers::{DISCHARGE, PENDING, builder, release_requested};

#[tokio::test]
async fn a_discharge_keeps_the_state_and_an_admission_is_announced() {
    let app = builder().settings(opd_testing::book_curl).spawn().await;
    release_requested(&app, 200, Disposition::Discharge).await;
    release_requested(&app, 300, Disposition::Admission).await;
    assert_eq!(
        app.get_expect(PENDING, 200).await,
        json!([
            {"id": 200, "time": "2021 07 12 8:35 PM", "next_state": "discharge", "post_medication": "NM x 10 days"},
            {"id": 300, "time": "2021 07 12 8:35 PM", "next_state": "admission", "post_medication": "NM x 10 days"}
        ])
    );

    assert_eq!(
        app.get_expect(&format!("{PENDING}?patient=300"), 200).await,
        json!([{"id": 300, "time": "2021 07 12 8:35 PM", "next_state": "admission", "post_medication": "NM x 10 days"}]),
        "one patient's entries when asked"
    );

    // The book's curl command, as printed.
    let answer = app
        .curl_expect(
            Method::POST,
            DISCHARGE,
            r#"{"id":200,"time":"2021 07 12 9:35 PM","state":"discharge","post_medication":"NM x 10 days","next_visit":"2021 08 12 09:00AM"}"#,
            201,
        )
        .await;
    assert_eq!(answer, "Patient discharge recorded successfully");
    let admission =
        json!({"id": 300, "time": "2021 07 12 9:40 PM", "state": "admission", "notes": "ward 7"});
    app.post_expect(DISCHARGE, &admission, 201).await;

    assert_eq!(app.get_expect(PENDING, 200).await, json!([]));
    assert_eq!(
        app.count("select count(*) from discharges where (patient_id, state) in ((200, 'discharge'), (300, 'admission'))")
            .await,
        2
    );
    let admissions = app.events_until("patient.admission", 1).await;
    assert_eq!(admissions.len(), 1, "only the admission is announced");
    assert_eq!(
        admissions[0].1,
        json!({"id": 300, "time": "2021 07 12 9:40 PM", "notes": "ward 7"})
    );
    let home = app.get("/opd/release/").await;
    assert_eq!(home.text().await.unwrap(), "Release Service v0.1.0\n");
}

#[tokio::test]
async fn a_discharge_reads_its_patients_entries_not_the_whole_queue() {
    let mut app = crate::helpers::spawn_app().await;
    // 20,000 others wait before patient 77, with statistics that put hundreds of entries on
    // each patient (as inspection's benchmark found): the queue's own index must not be read.
    app.execute(
        "insert into release_queue (patient_id, time, next_state, received_at)
         select 100000 + g, '2021 07 12 8:35 PM', 'discharge', now() from generate_series(1, 20000) g;
         insert into release_queue (patient_id, time, next_state, received_at)
         values (77, '2021 07 12 8:35 PM', 'discharge', now());
         alter table release_queue alter column patient_id set (n_distinct = 50);
         analyze release_queue",
    )
    .await;
    app.post_expect(
        DISCHARGE,
        &json!({"id": 77, "time": "2021 07 12 9:35 PM", "state": "discharge"}),
        201,
    )
    .await;
    let read = app
        .stop_and_count_index_reads("release_queue", "release_queue_patient")
        .await;
    assert!(
        read <= 10,
        "{read} index entries read to discharge one patient"
    );
}
