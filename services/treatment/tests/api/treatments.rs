use opd_testing::Method;
use serde_json::json;

use crate::helpers::{PENDING, builder, sent_for_treatment, spawn_app};

#[tokio::test]
async fn medication_keeps_the_dose_and_takes_the_patient_off_the_list() {
    let app = builder().settings(opd_testing::book_curl).spawn().await;
    sent_for_treatment(&app, 200).await;
    sent_for_treatment(&app, 300).await;

    // The book's curl command, as printed (form content type, `dose` included).
    let answer = app
        .curl_expect(
            Method::POST,
            "/opd/treatment/medication",
            r#"{"id":200,"time":"2021 07 12 4:35 PM","dose":"xyz x 1, abc x 2","notes":"low fever"}"#,
            201,
        )
        .await;
    assert_eq!(answer, "Record updated successfully");
    assert_eq!(
        app.get_expect(PENDING, 200).await,
        json!([{"id": 300, "medication": "XYZ x 3"}])
    );
    assert_eq!(
        app.get_expect("/opd/treatment/history/200", 200).await,
        json!([{"id": 200, "time": "2021 07 12 4:35 PM", "dose": "xyz x 1, abc x 2", "notes": "low fever"}])
    );
    let home = app.get("/opd/treatment/").await;
    assert_eq!(home.text().await.unwrap(), "Treatment Service v0.1.0\n");
}

#[tokio::test]
async fn test_records_are_kept_in_order() {
    let app = spawn_app().await;
    sent_for_treatment(&app, 200).await;
    for (time, status) in [("10:00", "sample collected"), ("12:00", "done")] {
        let test = json!({"id": 200, "time": time, "test_name": "FBC", "status": status});
        app.post_expect("/opd/treatment/tests", &test, 201).await;
    }
    assert_eq!(
        app.get_expect("/opd/treatment/tests/200", 200).await,
        json!([
            {"id": 200, "time": "10:00", "test_name": "FBC", "status": "sample collected"},
            {"id": 200, "time": "12:00", "test_name": "FBC", "status": "done"}
        ])
    );
}

#[tokio::test]
async fn a_medication_reads_its_patients_entries_not_the_whole_queue() {
    let mut app = spawn_app().await;
    // 20,000 others wait before patient 77, with statistics that put hundreds of entries on
    // each patient (as inspection's benchmark found): the queue's own index must not be read.
    app.execute(
        "insert into treatment_queue (patient_id, received_at)
         select 100000 + g, now() from generate_series(1, 20000) g;
         insert into treatment_queue (patient_id, received_at) values (77, now());
         alter table treatment_queue alter column patient_id set (n_distinct = 50);
         analyze treatment_queue",
    )
    .await;
    app.post_expect(
        "/opd/treatment/medication",
        &json!({"id": 77, "time": "2021 07 12 4:35 PM", "dose": "xyz x 1"}),
        201,
    )
    .await;
    let read = app
        .stop_and_count_index_reads("treatment_queue", "treatment_queue_patient")
        .await;
    assert!(read <= 10, "{read} index entries read to treat one patient");
}
