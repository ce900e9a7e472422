use super::*;

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 3).unwrap_or_default()
}

fn registered(patient: i64, token: i64) -> Change {
    Change::Registered {
        patient,
        token,
        day: day(),
    }
}

/// Applies, then pretends the bucket took every write (revision = the stream sequence).
fn apply_and_write(projection: &mut Projection, seq: u64, change: Change) -> Applied {
    let applied = projection.apply(seq, change);
    for write in projection.writes() {
        projection.written(&write.key, seq);
    }
    applied
}

#[test]
fn a_registration_puts_the_token_in_the_inspection_queue() {
    let mut projection = Projection::default();
    let applied = projection.apply(7, registered(200, 12));
    assert_eq!(applied, Applied::Changed(vec!["visit.200".into()]));
    assert_eq!(
        projection.writes(),
        vec![Write {
            key: "visit.200".into(),
            entry: Entry::Visit(Visit {
                day: day(),
                token: 12,
                stage: Stage::Inspection,
                seq: 7
            }),
            expected: 0,
        }]
    );
}

#[test]
fn leaving_a_queue_moves_the_visit_on_and_calls_its_token() {
    let mut projection = Projection::default();
    apply_and_write(&mut projection, 7, registered(200, 12));
    let applied = projection.apply(
        9,
        Change::Left {
            patient: 200,
            from: Stage::Inspection,
        },
    );
    assert_eq!(
        applied,
        Applied::Changed(vec!["visit.200".into(), "called.inspection".into()])
    );
    let writes = projection.writes();
    assert_eq!(writes.len(), 2);
    assert_eq!(
        writes[0].entry,
        Entry::Called(
            Stage::Inspection,
            Called {
                day: day(),
                token: 12,
                seq: 9
            }
        )
    );
    assert_eq!(
        writes[1],
        Write {
            key: "visit.200".into(),
            entry: Entry::Visit(Visit {
                day: day(),
                token: 12,
                stage: Stage::Treatment,
                seq: 9
            }),
            expected: 7,
        },
        "written only if the bucket still holds the registration's revision"
    );
}

#[test]
fn a_redelivered_event_changes_nothing() {
    let mut projection = Projection::default();
    apply_and_write(&mut projection, 7, registered(200, 12));
    let left = Change::Left {
        patient: 200,
        from: Stage::Inspection,
    };
    apply_and_write(&mut projection, 9, left);
    assert_eq!(
        projection.apply(7, registered(200, 12)),
        Applied::Unchanged("applied before")
    );
    assert_eq!(
        projection.apply(9, left),
        Applied::Unchanged("applied before")
    );
    assert!(projection.writes().is_empty());
}

#[test]
fn an_event_redelivered_after_half_its_writes_writes_the_other_half() {
    let mut projection = Projection::default();
    apply_and_write(&mut projection, 7, registered(200, 12));
    let left = Change::Left {
        patient: 200,
        from: Stage::Inspection,
    };
    projection.apply(9, left);
    // The visit's write was taken, the call's was not (the process died in between).
    projection.written("visit.200", 10);
    let mut reloaded = Projection::default();
    for write in projection.writes() {
        assert_eq!(write.key, "called.inspection");
    }
    if let Some(Stored { entry, revision }) = projection.entries.get("visit.200").cloned() {
        reloaded.load("visit.200".into(), revision, entry);
    }
    assert_eq!(
        reloaded.apply(9, left),
        Applied::Changed(vec!["called.inspection".into()])
    );
}

#[test]
fn a_visit_the_board_never_saw_or_in_another_queue_is_left_alone() {
    let mut projection = Projection::default();
    let left = |from| Change::Left { patient: 200, from };
    assert_eq!(
        projection.apply(3, left(Stage::Inspection)),
        Applied::Unchanged("the visit is not on the board")
    );
    apply_and_write(&mut projection, 7, registered(200, 12));
    assert_eq!(
        projection.apply(8, left(Stage::Treatment)),
        Applied::Unchanged("the visit is not waiting for that stage")
    );
    assert!(projection.writes().is_empty());
}

#[test]
fn a_new_visit_of_the_same_patient_replaces_the_old_one() {
    let mut projection = Projection::default();
    apply_and_write(&mut projection, 7, registered(200, 12));
    assert_eq!(
        apply_and_write(&mut projection, 20, registered(200, 31)),
        Applied::Changed(vec!["visit.200".into()])
    );
    assert_eq!(
        projection.visit("visit.200").map(|visit| visit.token),
        Some(31)
    );
}

#[test]
fn values_read_back_as_they_were_written() -> Result<(), serde_json::Error> {
    let visit = Entry::Visit(Visit {
        day: day(),
        token: 12,
        stage: Stage::Release,
        seq: 9,
    });
    assert_eq!(Entry::parse("visit.200", &visit.to_json()?), Some(visit));
    let called = Entry::Called(
        Stage::Treatment,
        Called {
            day: day(),
            token: 4,
            seq: 11,
        },
    );
    assert_eq!(
        Entry::parse("called.treatment", &called.to_json()?),
        Some(called)
    );
    assert_eq!(Entry::parse("called.lunch", b"{}"), None);
    Ok(())
}
