use async_nats::HeaderMap;
use board::PROJECTION_CONSUMER;
use board::projection::projector::merge_into;
use board::projection::written::Known;
use board::projection::{Change, Stage, Visit, visit_key};
use futures::future::join_all;
use opd_shared::events::{BOARD_BUCKET, PatientRegistered, headers};
use opd_testing::stream;

use crate::helpers::*;

#[tokio::test]
async fn the_board_follows_patients_through_the_opd() {
    let app = board().await;
    register(&app, 200, 1).await;
    register(&app, 201, 2).await;
    register(&app, 202, 3).await;
    board_shows(&app, expect((&[1, 2, 3], None), (&[], None), (&[], None))).await;

    inspect(&app, 201).await;
    board_shows(&app, expect((&[1, 3], Some(2)), (&[2], None), (&[], None))).await;
    inspect(&app, 200).await;
    board_shows(&app, expect((&[3], Some(1)), (&[2, 1], None), (&[], None))).await;
    treat(&app, 200).await;
    board_shows(&app, expect((&[3], Some(1)), (&[2], Some(1)), (&[1], None))).await;
    discharge(&app, 200).await;
    board_shows(
        &app,
        expect((&[3], Some(1)), (&[2], Some(1)), (&[], Some(1))),
    )
    .await;
    treat(&app, 201).await;
    admit(&app, 201).await;
    board_shows(
        &app,
        expect((&[3], Some(1)), (&[], Some(2)), (&[], Some(2))),
    )
    .await;
}

#[tokio::test]
async fn a_clinics_token_shows_its_site_beside_the_hospitals_same_number() {
    let app = board().await;
    register(&app, 210, 1).await;
    register_at(&app, 211, 1, "clinic").await;
    let clinic = serde_json::json!({"token": 1, "site": "clinic"});
    let waiting = [hospital(1), clinic.clone()];
    board_shows(
        &app,
        serde_json::json!([
            {"stage": "inspection", "waiting": waiting, "called": null},
            {"stage": "treatment", "waiting": [], "called": null},
            {"stage": "release", "waiting": [], "called": null},
        ]),
    )
    .await;
    // The clinic's patient is seen: the desk's call names the clinic's token, not the
    // hospital's number 1, which still waits.
    inspect(&app, 211).await;
    board_shows(
        &app,
        serde_json::json!([
            {"stage": "inspection", "waiting": [hospital(1)], "called": clinic},
            {"stage": "treatment", "waiting": [clinic], "called": null},
            {"stage": "release", "waiting": [], "called": null},
        ]),
    )
    .await;
}

#[tokio::test]
async fn a_visit_goes_where_its_latest_departure_puts_it_whatever_came_before() {
    let app = board().await;
    // A departure before any registration (registered before the board existed, say): no
    // token known, nothing shown.
    inspect(&app, 300).await;
    register(&app, 301, 7).await;
    board_shows(&app, expect((&[7], None), (&[], None), (&[], None))).await;
    // Treatment's departure, inspection's not seen: past treatment all the same.
    treat(&app, 301).await;
    board_shows(&app, expect((&[], None), (&[], Some(7)), (&[7], None))).await;
    // A registration after the early departure: that departure was an earlier visit's.
    register(&app, 300, 8).await;
    board_shows(&app, expect((&[8], None), (&[], Some(7)), (&[7], None))).await;
}

#[tokio::test]
async fn reading_the_whole_stream_again_changes_nothing() {
    let mut app = board().await;
    for (patient, token) in [(400, 1), (401, 2), (402, 3)] {
        register(&app, patient, token).await;
    }
    inspect(&app, 401).await;
    treat(&app, 401).await;
    let expected = expect((&[1, 3], Some(2)), (&[], Some(2)), (&[2], None));
    board_shows(&app, expected.clone()).await;
    app.caught_up(PROJECTION_CONSUMER).await;
    let written = bucket_last_revision(&app).await;

    // The owner deletes the projection's consumer and creates it again: it delivers the whole
    // stream from its start, every event a second time.
    app.stop().await;
    let js = stream::jetstream(&app.settings.nats).await.unwrap();
    let patients = js.get_stream("PATIENT").await.unwrap();
    patients.delete_consumer(PROJECTION_CONSUMER).await.unwrap();
    app.create_stream().await;
    app.restart().await;
    app.caught_up(PROJECTION_CONSUMER).await;

    assert_eq!(stages(&app).await, expected);
    assert_eq!(
        bucket_last_revision(&app).await,
        written,
        "a redelivered event wrote to the board"
    );
}

#[tokio::test]
async fn replicas_share_the_projection_and_lose_no_move() {
    let app = board().await;
    let _replica = app.spawn_replica().await;
    let patients: Vec<i64> = (500..520).collect();
    for (token, patient) in (1..).zip(&patients) {
        register(&app, *patient, token).await;
    }
    for patient in &patients {
        inspect(&app, *patient).await;
    }
    for patient in &patients {
        treat(&app, *patient).await;
    }
    for patient in patients.iter().step_by(2) {
        discharge(&app, *patient).await;
    }
    let left_in_release: Vec<i64> = (2..=20).step_by(2).collect();
    board_shows(
        &app,
        expect(
            (&[], Some(20)),
            (&[], Some(20)),
            (&left_in_release, Some(19)),
        ),
    )
    .await;
}

#[tokio::test]
async fn an_event_that_can_never_apply_is_parked_and_the_board_goes_on() {
    let app = board().await;
    let meta = stream::new_meta::<PatientRegistered>();
    let mut headers: HeaderMap = meta.to_headers();
    headers.insert(headers::MESSAGE_ID, "not-an-event");
    stream::publish_raw(
        &app.settings.nats,
        "patient.register",
        headers,
        br#"{"id":"two hundred"}"#.to_vec(),
    )
    .await;
    register(&app, 600, 4).await;
    board_shows(&app, expect((&[4], None), (&[], None), (&[], None))).await;
    assert_eq!(
        app.count("select count(*) from dead_letters where consumer = 'board-patient-flow'")
            .await,
        1
    );
    let letters = app.get_expect("/admin/dead-letters", 200).await;
    let id = letters[0]["id"].as_i64().unwrap();
    let retried = app
        .post_expect(
            &format!("/admin/dead-letters/{id}/retry"),
            &serde_json::json!({}),
            409,
        )
        .await;
    assert!(
        retried["detail"]
            .as_str()
            .unwrap()
            .contains("stream's order"),
        "{retried}"
    );
}

async fn bucket_last_revision(app: &opd_testing::TestApp) -> u64 {
    let js = stream::jetstream(&app.settings.nats).await.unwrap();
    let mut bucket = js.get_stream(format!("KV_{BOARD_BUCKET}")).await.unwrap();
    bucket.info().await.unwrap().state.last_sequence
}

#[tokio::test]
async fn merges_of_the_same_visit_at_once_lose_none_of_it() {
    let app = board().await;
    let js = app.infra().jetstream.clone();
    let bucket = js.get_key_value(BOARD_BUCKET).await.unwrap();
    // Forty projectors merging into one visit at the same moment, each one event: every one of
    // them reads the visit, and all but one find it written when they write it back.
    let changes: Vec<(u64, Change)> = (1..=40)
        .map(|seq| {
            let change = match seq % 4 {
                0 => registered(800, seq as i64),
                1 => left(800, Stage::Inspection),
                2 => left(800, Stage::Treatment),
                _ => left(800, Stage::Release),
            };
            (seq, change)
        })
        .collect();
    let merged = join_all(changes.iter().map(|change| {
        let (js, bucket) = (js.clone(), bucket.clone());
        async move { merge_into(&js, &bucket, 800, std::slice::from_ref(change), None).await }
    }))
    .await;
    assert!(merged.iter().all(Result::is_ok), "{merged:?}");
    let mut expected = Visit::default();
    for (seq, change) in &changes {
        expected.merge(*seq, change.clone());
    }
    let stored = bucket.get("visit.800").await.unwrap().unwrap();
    assert_eq!(
        Visit::parse("visit.800", &stored),
        Some(expected),
        "a merge was written over"
    );
}

#[tokio::test]
async fn a_desks_call_outlives_the_patients_next_visit_and_a_restart() {
    let mut app = board().await;
    register(&app, 900, 1).await;
    inspect(&app, 900).await;
    treat(&app, 900).await;
    discharge(&app, 900).await;
    register(&app, 901, 2).await;
    // Patient 900 comes back for a new visit: token 3, and the desks' calls of token 1 stay.
    register(&app, 900, 3).await;
    let expected = expect((&[2, 3], Some(1)), (&[], Some(1)), (&[], Some(1)));
    board_shows(&app, expected.clone()).await;
    // A restarted board reads the same off its bucket.
    app.restart().await;
    board_shows(&app, expected).await;
}

/// The patient's registration today at the hospital, with `token`.
fn registered(patient: i64, token: i64) -> Change {
    Change::Registered {
        patient,
        token,
        site: opd_shared::domain::Site::hospital(),
        day: chrono::Utc::now().date_naive(),
    }
}

fn left(patient: i64, from: Stage) -> Change {
    Change::Left { patient, from }
}

/// `changes` merged in order into a new visit: what the bucket must hold after all of them.
fn all_of(changes: &[(u64, Change)]) -> Visit {
    let mut visit = Visit::default();
    for (seq, change) in changes {
        visit.merge(*seq, change.clone());
    }
    visit
}

/// The patient's visit as the bucket holds it, with its revision.
async fn stored(bucket: &async_nats::jetstream::kv::Store, patient: i64) -> Option<Known> {
    let key = visit_key(patient);
    let entry = bucket.entry(key.as_str()).await.unwrap()?;
    Some(Known {
        visit: Visit::parse(&key, &entry.value)?,
        revision: entry.revision,
    })
}

#[tokio::test]
async fn a_visit_held_as_last_written_is_read_again_when_another_replica_wrote_it_since() {
    let app = board().await;
    let js = app.infra().jetstream.clone();
    let bucket = js.get_key_value(BOARD_BUCKET).await.unwrap();
    let changes = [
        (1, registered(810, 7)),
        (2, left(810, Stage::Inspection)),
        (3, left(810, Stage::Treatment)),
    ];
    // This replica writes the registration and holds the visit as it wrote it ...
    let mine = merge_into(&js, &bucket, 810, &changes[..1], None)
        .await
        .unwrap();
    // ... another replica merges the inspection's departure ...
    merge_into(&js, &bucket, 810, &changes[1..2], None)
        .await
        .unwrap();
    // ... and this one merges the treatment's into what it holds, which is out of date.
    let merged = merge_into(&js, &bucket, 810, &changes[2..], Some(mine.now))
        .await
        .unwrap();
    assert_eq!(merged.changed, [true]);
    let now = stored(&bucket, 810).await.unwrap();
    assert_eq!(now.visit, all_of(&changes), "a merge was written over");
    assert_eq!(merged.now, now, "what is held is not what was written");
}

#[tokio::test]
async fn a_returning_patients_registration_is_merged_into_the_visit_the_bucket_holds() {
    let app = board().await;
    let js = app.infra().jetstream.clone();
    let bucket = js.get_key_value(BOARD_BUCKET).await.unwrap();
    let changes = [
        (1, registered(820, 4)),
        (2, left(820, Stage::Inspection)),
        (3, registered(820, 9)),
    ];
    merge_into(&js, &bucket, 820, &changes[..2], None)
        .await
        .unwrap();
    // Not held (another replica wrote the first visit, or this one has forgotten it): a
    // registration is tried as a new key first.
    let merged = merge_into(&js, &bucket, 820, &changes[2..], None)
        .await
        .unwrap();
    assert_eq!(merged.changed, [true]);
    let now = stored(&bucket, 820).await.unwrap();
    let expected = all_of(&changes);
    assert!(
        expected.calls[0].is_some(),
        "the desk's call of token 4 is what this test keeps"
    );
    assert_eq!(now.visit, expected, "the first visit was written over");
    assert_eq!(merged.now, now);
}

#[tokio::test]
async fn an_event_the_held_visit_has_is_written_again_if_the_bucket_lost_it() {
    let app = board().await;
    let js = app.infra().jetstream.clone();
    let bucket = js.get_key_value(BOARD_BUCKET).await.unwrap();
    let changes = [(1, registered(830, 5))];
    let mine = merge_into(&js, &bucket, 830, &changes, None).await.unwrap();
    // The key goes (an operator's purge, an age limit) and the event comes again.
    bucket.delete(visit_key(830)).await.unwrap();
    let merged = merge_into(&js, &bucket, 830, &changes, Some(mine.now))
        .await
        .unwrap();
    assert_eq!(merged.changed, [true], "the bucket had lost it");
    let now = stored(&bucket, 830).await;
    assert_eq!(now.map(|known| known.visit), Some(all_of(&changes)));
}

#[tokio::test]
async fn a_bucket_made_anew_is_not_written_on_with_revisions_held_from_the_old_one() {
    let app = board().await;
    let admin = stream::jetstream(&app.settings.nats).await.unwrap();
    register(&app, 840, 1).await;
    let old = admin.get_key_value(BOARD_BUCKET).await.unwrap();
    let held =
        opd_testing::eventually("the registration in the bucket", || stored(&old, 840)).await;

    // The operator rebuilds the board: deletes the bucket, and the owner makes it again. There,
    // the patient's visit (another registration) gets the very revision the projector holds.
    admin.delete_key_value(BOARD_BUCKET).await.unwrap();
    app.create_stream().await;
    let new = board_bucket(&app).await;
    for other in 1..held.revision {
        let filler = all_of(&[(1, registered(10_000 + other as i64, 1))]);
        new.put(visit_key(10_000 + other as i64), filler.to_json().unwrap())
            .await
            .unwrap();
    }
    let rebuilt = [(50, registered(840, 9))];
    let revision = new
        .put(visit_key(840), all_of(&rebuilt).to_json().unwrap())
        .await
        .unwrap();
    assert_eq!(
        revision, held.revision,
        "the test needs the revisions to meet"
    );
    // Longer than the projector takes its bucket for the one it bound to without asking.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;

    inspect(&app, 840).await;
    let now = opd_testing::eventually("the inspection's departure in the bucket", || async {
        stored(&new, 840)
            .await
            .filter(|known| known.visit.left[0] != 0)
    })
    .await;
    assert_eq!(
        (now.visit.registered, now.visit.token),
        (50, 9),
        "the new bucket's visit was written over with the one held from the old bucket"
    );
}
