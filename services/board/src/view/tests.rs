//! What a board instance shows of the visits it is given: which tokens, on which day, at which
//! site, and what a screen is sent when a token changes.

use std::time::Duration;

use chrono::{Days, NaiveDate};
use opd_shared::domain::Site;
use opd_shared::infra::config::BoardSettings;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::TryRecvError;
use tokio_util::sync::CancellationToken;

use super::{Board, Change, Ticket, today};
use crate::projection::Visit;

fn board() -> Board {
    let settings = BoardSettings {
        max_streams: 4,
        keep_alive: Duration::from_secs(15),
        reconnect_after: Duration::from_secs(1),
        buffer: 16,
    };
    Board::new(settings, CancellationToken::new())
}

fn site(name: &str) -> Site {
    name.parse().expect("a site's name")
}

/// A visit waiting for inspection since stream sequence `registered`.
fn waiting(registered: u64, day: NaiveDate, token: i64, at: &str) -> Visit {
    Visit {
        registered,
        day: Some(day),
        token,
        site: site(at),
        ..Visit::default()
    }
}

fn ticket(token: i64, at: &str) -> Ticket {
    Ticket {
        token,
        site: site(at),
    }
}

/// A board where patient 1's token 7 waits for inspection (revision 1), and the changes after it.
fn one_waiting() -> (Board, Receiver<Change>) {
    let board = board();
    board.take(1, 1, Some(waiting(10, today(), 7, "hospital")));
    let changes = board.subscribe();
    (board, changes)
}

fn inspection_queue(board: &Board) -> Vec<Ticket> {
    board.snapshot().stages[0].waiting.clone()
}

fn yesterday() -> NaiveDate {
    today()
        .checked_sub_days(Days::new(1))
        .expect("a day before today")
}

#[test]
fn a_token_is_shown_on_the_day_and_with_the_site_that_gave_it() {
    let board = board();
    board.take(1, 1, Some(waiting(10, today(), 7, "hospital")));
    board.take(2, 2, Some(waiting(11, yesterday(), 8, "hospital")));
    board.take(3, 3, Some(waiting(12, today(), 7, "clinic")));
    board.take(4, 4, Some(waiting(13, yesterday(), 9, "clinic")));

    assert_eq!(
        inspection_queue(&board),
        vec![ticket(7, "hospital"), ticket(7, "clinic")],
        "today's tokens, each with its own site; yesterday's are not on the board"
    );
    let (events, revision) = board.since(0).expect("revision 0 is behind this board");
    assert_eq!(
        (events.len(), revision),
        (2, 4),
        "a screen catching up is sent today's two"
    );
}

#[test]
fn a_patients_next_visit_takes_the_old_token_off_every_screen() {
    let (board, mut changes) = one_waiting();

    // The same patient registers again today: a new token, the old one must go.
    board.take(1, 2, Some(waiting(20, today(), 12, "hospital")));
    assert!(matches!(changes.try_recv(), Ok(Change::Reset)));
    assert_eq!(inspection_queue(&board), vec![ticket(12, "hospital")]);
    assert!(
        board.since(1).is_none(),
        "a screen that saw the old token needs a snapshot"
    );
}

#[test]
fn a_visit_that_moves_on_is_one_change_for_the_streams() {
    let (board, mut changes) = one_waiting();

    // Called from inspection: it waits for treatment now.
    let mut called = waiting(10, today(), 7, "hospital");
    called.left[0] = 15;
    board.take(1, 2, Some(called));
    assert!(matches!(
        changes.try_recv(),
        Ok(Change::Events { revision: 2, .. })
    ));
    assert!(matches!(changes.try_recv(), Err(TryRecvError::Empty)));
    let snapshot = board.snapshot();
    assert!(snapshot.stages[0].waiting.is_empty());
    assert_eq!(snapshot.stages[1].waiting, vec![ticket(7, "hospital")]);
    assert_eq!(snapshot.stages[1].orders, vec![15]);
}
