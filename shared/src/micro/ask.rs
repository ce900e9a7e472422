//! The broadcast query: one request on [`WHERE_SUBJECT`], the answers of every service that
//! hears it gathered until a deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::PatientId;
use crate::micro::{Located, Question, SERVICES, WHERE_SUBJECT, Whereabouts};

/// What one service said, or that it said nothing in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Answer {
    /// The service knows the patient.
    Here { whereabouts: Whereabouts },
    /// The service answered: it has never heard of the patient.
    NotHere,
    /// The service answered with an error (its database is down, say).
    Error { code: u16, reason: String },
    /// No answer before the deadline: the service is down or unreachable, which says nothing
    /// about the patient.
    NotAnswering,
}

/// Every service's answer about one patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": 200,
    "services": {
        "registration": {"status": "here", "whereabouts": {"arrived_at": "2026-12-03T09:02:11Z", "waiting": false, "token": 3}},
        "inspection": {"status": "here", "whereabouts": {"arrived_at": "2026-12-03T09:02:11Z", "waiting": false, "done_at": "2026-12-03T10:21:40Z", "token": 3}},
        "treatment": {"status": "here", "whereabouts": {"arrived_at": "2026-12-03T10:21:40Z", "waiting": true, "ahead": 2}},
        "release": {"status": "not-answering"}
    }
}))]
pub struct Answers {
    pub id: i64,
    /// By service name: each of the four services, answered or not.
    pub services: BTreeMap<String, Answer>,
}

/// Asks every service where patient `id` is, over `nats`, and waits until each has answered or
/// `deadline` has passed.
pub async fn where_is(
    nats: &async_nats::Client,
    id: PatientId,
    deadline: Duration,
) -> Result<Answers, async_nats::Error> {
    // Asked while disconnected, every service would look down: wait for the connection (a
    // client just started is still connecting) for as long as the deadline, then say so.
    let connect_by = tokio::time::Instant::now() + deadline;
    while nats.connection_state() != async_nats::connection::State::Connected {
        if tokio::time::Instant::now() >= connect_by {
            return Err("NATS cannot be reached: no service can be asked right now".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await?;
    let question = serde_json::to_vec(&Question { id })?;
    nats.publish_with_reply(WHERE_SUBJECT, inbox, question.into())
        .await?;
    nats.flush().await?;
    let mut services: BTreeMap<String, Answer> = BTreeMap::new();
    let gathering = async {
        while let Some(reply) = replies.next().await {
            if let Some((name, answer)) = read(&reply) {
                services.insert(name, answer);
            }
            if SERVICES.iter().all(|name| services.contains_key(*name)) {
                break;
            }
        }
    };
    // The deadline ends the gathering; what has not answered by then is reported so.
    let _ = tokio::time::timeout(deadline, gathering).await;
    replies.unsubscribe().await.ok();
    for name in SERVICES {
        services
            .entry(name.to_owned())
            .or_insert(Answer::NotAnswering);
    }
    Ok(Answers {
        id: id.get(),
        services,
    })
}

/// One reply: the service's name and answer. A reply without a name (an error) is named by the
/// service in its error text when it can be, and skipped otherwise.
fn read(reply: &async_nats::Message) -> Option<(String, Answer)> {
    let error = reply.headers.as_ref().and_then(|headers| {
        let code = headers.get(async_nats::service::NATS_SERVICE_ERROR_CODE)?;
        let reason = headers
            .get(async_nats::service::NATS_SERVICE_ERROR)
            .map(|value| value.as_str().to_owned())
            .unwrap_or_default();
        Some((code.as_str().parse::<u16>().unwrap_or(500), reason))
    });
    if let Some((code, reason)) = error {
        // An error reply carries no body: the service names itself in the reason.
        let name = SERVICES
            .iter()
            .find(|name| reason.starts_with(&format!("{name}: ")))?;
        return Some(((*name).to_owned(), Answer::Error { code, reason }));
    }
    let located: Located = serde_json::from_slice(&reply.payload).ok()?;
    let answer = match located.here {
        Some(whereabouts) => Answer::Here { whereabouts },
        None => Answer::NotHere,
    };
    Some((located.service, answer))
}
