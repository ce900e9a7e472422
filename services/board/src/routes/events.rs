//! `GET /opd/board/events`: the board as server-sent events.
//!
//! A stream opens with a `snapshot` event (the whole board) and then sends each change as it
//! happens: `visit` (a token joined a queue, moved on, or left: `{"token", "stage"}`) and
//! `called` (a stage called a token: `{"stage", "token"}`). Every event's `id` is the bucket's
//! revision: a browser that reconnects sends the last one as `Last-Event-ID` and is sent
//! exactly the changes it missed, or a fresh snapshot where that cannot be told. A comment
//! goes down idle streams every `board.keep_alive`; streams end when the instance stops.

use std::convert::Infallible;

use axum::Extension;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use opd_shared::http::problem::Problem;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, broadcast};

use crate::view::{Board, Change, Snapshot};

/// Server-sent events: a snapshot, then every change.
#[utoipa::path(get, path = "/opd/board/events", tag = "board", operation_id = "board_events",
    security(()),
    params(("Last-Event-ID" = Option<u64>, Header,
        description = "The id of the last event received: the stream starts with the changes \
            after it instead of a snapshot")),
    responses(
        (status = 200, description = "`text/event-stream`: `snapshot` (a board, as \
            `GET /opd/board/state` answers), then `visit` `{\"token\":12,\"stage\":\"treatment\"}` \
            (stage `left` when the patient leaves) and `called` `{\"stage\":\"inspection\",\"token\":12}`; \
            each with the bucket's revision as `id`", body = String, content_type = "text/event-stream"),
        (status = 503, description = "Too many streams on this instance \
            (`/problems/too-many-streams`), or it has not read the board yet \
            (`/problems/board-loading`); retry after `Retry-After`", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn events(Extension(board): Extension<Board>, headers: HeaderMap) -> Response {
    let Some(permit) = board.open_stream() else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too-many-streams",
            "Too many streams",
            format!(
                "this instance serves at most {} event streams at once",
                board.settings().max_streams
            ),
        )
        .retry_after(board.settings().reconnect_after * 5);
    };
    if let Err(loading) = super::loaded(&board).await {
        return loading;
    }
    let last_seen = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let keep_alive = KeepAlive::new().interval(board.settings().keep_alive);
    let shutdown = board.shutdown().clone().cancelled_owned();
    let events = changes(board, last_seen, permit).take_until(shutdown);
    (
        // Proxies that buffer responses (nginx) would hold the events back.
        [(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        )],
        Sse::new(events).keep_alive(keep_alive),
    )
        .into_response()
}

/// A stream's events: the reconnection delay, the opening (a snapshot, or the changes since
/// `last_seen`), then the changes as they come. Holds `permit` while it lives.
fn changes(
    board: Board,
    last_seen: Option<u64>,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    // Subscribed before the state is read: nothing falls between the two.
    let receiver = board.subscribe();
    let (opening, seen) = opening(&board, last_seen);
    let retry = Event::default().retry(board.settings().reconnect_after);
    let live = stream::unfold(
        Live {
            board,
            receiver,
            seen,
            _permit: permit,
        },
        Live::next,
    );
    stream::iter(std::iter::once(retry).chain(opening).map(Ok))
        .chain(live.flat_map(|events| stream::iter(events.into_iter().map(Ok))))
}

struct Live {
    board: Board,
    receiver: broadcast::Receiver<Change>,
    /// The revision the screen has.
    seen: u64,
    _permit: OwnedSemaphorePermit,
}

impl Live {
    /// The next change's events for this screen.
    async fn next(mut self) -> Option<(Vec<Event>, Self)> {
        loop {
            let events = match self.receiver.recv().await {
                Ok(Change::Events { revision, events }) => {
                    if revision <= self.seen {
                        continue;
                    }
                    self.seen = revision;
                    events
                }
                // Fallen behind, or everything changed: start the screen over.
                Ok(Change::Reset) | Err(RecvError::Lagged(_)) => {
                    let snapshot = self.board.snapshot();
                    self.seen = snapshot.revision;
                    vec![snapshot_event(&snapshot)]
                }
                Err(RecvError::Closed) => return None,
            };
            return Some((events, self));
        }
    }
}

/// What a stream opens with, and the revision it brings the screen to.
fn opening(board: &Board, last_seen: Option<u64>) -> (Vec<Event>, u64) {
    if let Some(since) = last_seen.and_then(|seen| board.since(seen)) {
        return since;
    }
    let snapshot = board.snapshot();
    let revision = snapshot.revision;
    (vec![snapshot_event(&snapshot)], revision)
}

fn snapshot_event(snapshot: &Snapshot) -> Event {
    // A struct of strings and numbers always serialises.
    let data = serde_json::to_string(snapshot).unwrap_or_default();
    Event::default()
        .event("snapshot")
        .id(snapshot.revision.to_string())
        .data(data)
}
