use super::*;

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 3).unwrap_or_default()
}

fn registered(token: i64) -> Change {
    Change::Registered {
        patient: 200,
        token,
        site: Site::hospital(),
        day: day(),
    }
}

fn left(from: Stage) -> Change {
    Change::Left { patient: 200, from }
}

/// The events of one visit: registered (7), inspected (9), treated (12), discharged (15).
fn journey() -> Vec<(u64, Change)> {
    vec![
        (7, registered(12)),
        (9, left(Stage::Inspection)),
        (12, left(Stage::Treatment)),
        (15, left(Stage::Release)),
    ]
}

fn merged(events: &[(u64, Change)]) -> Visit {
    let mut visit = Visit::default();
    for (seq, change) in events {
        visit.merge(*seq, change.clone());
    }
    visit
}

#[test]
fn a_visit_moves_through_the_queues_and_each_departure_is_a_call() {
    let events = journey();
    let stages: Vec<Option<Stage>> = (0..=events.len())
        .map(|n| merged(&events[..n]).stage())
        .collect();
    assert_eq!(
        stages,
        [
            None,
            Some(Stage::Inspection),
            Some(Stage::Treatment),
            Some(Stage::Release),
            Some(Stage::Left)
        ]
    );
    let visit = merged(&events);
    assert_eq!(visit.token, 12);
    assert_eq!(visit.left_at(Stage::Inspection), Some(9));
    assert_eq!(visit.left_at(Stage::Release), Some(15));
    assert_eq!(
        merged(&events[..3]).joined(),
        12,
        "joined release's queue when treated"
    );
}

#[test]
fn any_order_and_any_repeat_end_in_the_same_visit() {
    let events = journey();
    let expected = merged(&events);
    // Every order of the four events (24), each with every event twice.
    let mut orders: Vec<Vec<usize>> = vec![vec![]];
    for _ in 0..events.len() {
        let mut longer = Vec::new();
        for order in &orders {
            for i in (0..events.len()).filter(|i| !order.contains(i)) {
                longer.push([order.clone(), vec![i]].concat());
            }
        }
        orders = longer;
    }
    assert_eq!(orders.len(), 24);
    for order in orders {
        let mut visit = Visit::default();
        for i in order.iter().chain(order.iter()) {
            visit.merge(events[*i].0, events[*i].1.clone());
        }
        assert_eq!(visit, expected, "order {order:?}");
    }
}

#[test]
fn an_event_merged_before_changes_nothing() {
    let mut visit = merged(&journey());
    for (seq, change) in journey() {
        assert!(
            !visit.merge(seq, change.clone()),
            "{change:?} changed the visit again"
        );
    }
}

#[test]
fn a_new_visit_starts_over_and_the_old_departures_do_not_count() {
    let mut visit = merged(&journey());
    assert!(visit.merge(20, registered(31)));
    assert_eq!(visit.stage(), Some(Stage::Inspection));
    assert_eq!(visit.token, 31);
    assert_eq!(
        visit.left_at(Stage::Inspection),
        None,
        "that was the first visit's"
    );
    assert_eq!(visit.joined(), 20);
}

#[test]
fn departures_before_the_registration_wait_for_it() {
    let mut visit = Visit::default();
    visit.merge(9, left(Stage::Inspection));
    assert_eq!(visit.stage(), None, "no token yet: not on the board");
    visit.merge(7, registered(12));
    assert_eq!(visit.stage(), Some(Stage::Treatment));
}

#[test]
fn values_read_back_as_they_were_written() -> Result<(), serde_json::Error> {
    let visit = merged(&journey()[..2]);
    assert_eq!(Visit::parse("visit.200", &visit.to_json()?), Some(visit));
    assert_eq!(Visit::parse("lease", b"{}"), None);
    assert_eq!(Visit::parse("visit.200", b"not json"), None);
    assert_eq!(patient_of("visit.200"), Some(200));
    assert_eq!(patient_of("lease"), None);
    assert_eq!(patient_of("visit.two"), None);
    Ok(())
}

/// A second visit begins before the first one's last departures are merged (replicas merge in
/// any order): every order of the same events ends in the same visit, calls included. (The
/// visit remembers two registrations: a departure merged after two later ones is not a call.)
#[test]
fn a_visits_calls_do_not_depend_on_the_order_of_the_merges() {
    let events = vec![
        (7, registered(12)),
        (9, left(Stage::Inspection)),
        (12, left(Stage::Treatment)),
        (15, registered(30)),
        (16, left(Stage::Release)),
        (18, left(Stage::Inspection)),
    ];
    let in_order = merged(&events);
    assert_eq!(
        in_order.calls[2].as_ref().map(|call| call.token),
        Some(30),
        "the release desk called the second visit's token: {in_order:?}"
    );
    // Each event merged last, after all the others in reverse order, and the whole in reverse.
    let mut orders: Vec<Vec<(u64, Change)>> = (0..events.len())
        .map(|last| {
            let mut order: Vec<_> = events.iter().rev().cloned().collect();
            let moved = order.remove(events.len() - 1 - last);
            order.push(moved);
            order
        })
        .collect();
    orders.push(events.iter().rev().cloned().collect());
    for order in orders {
        let seqs: Vec<u64> = order.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(
            merged(&order).calls,
            in_order.calls,
            "merged in order {seqs:?}"
        );
    }
}
