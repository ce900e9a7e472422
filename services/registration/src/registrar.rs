//! Registrations that arrive together are committed together.
//!
//! Each registration advances today's token counter, whose row stays locked until the commit
//! is on disk; committed one by one, registrations would wait for one flush of the
//! write-ahead log each, in single file. The registrar queues the requests instead, and one
//! commit at a time takes every registration that is waiting (up to [`MAX_GROUP`]) into a
//! single statement ([`token_counter::register_all`]): one flush serves the whole group. A
//! request alone is committed at once; a group forms only while a commit is under way, so
//! waiting adds no delay of its own.
//!
//! Nothing is weakened: a request is answered only after its own commit, tokens stay gapless
//! and in order, and a registration the database rejects is retried alone so that it fails
//! only its own request.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, oneshot};

use opd_shared::domain::Site;
use opd_shared::events::outbox::Envelope;
use opd_shared::http::error::ApiError;
use sqlx::PgPool;

use crate::domain::PatientForm;
use crate::token_counter::{self, IssuedToken, Registration};

/// The most registrations one commit takes.
pub const MAX_GROUP: usize = 128;

/// What a registration request is answered: its token, or `None` if the patient was
/// registered already.
type Answer = Result<Option<IssuedToken>, ApiError>;

/// The instance's registration queue, shared by its requests (`axum::Extension`).
#[derive(Clone)]
pub struct Registrar {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    site: Site,
    /// Wakes the outbox relay after a commit that wrote events.
    events_written: Arc<Notify>,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// Whether a task is committing; it takes what waits until nothing does.
    committing: bool,
}

struct Waiting {
    form: PatientForm,
    event: Envelope,
    answer: oneshot::Sender<Answer>,
}

impl Registrar {
    pub fn new(pool: PgPool, site: Site, events_written: Arc<Notify>) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                site,
                events_written,
                queue: Mutex::default(),
            }),
        }
    }

    /// Registers a new patient with the day's next token and its `patient.register` event,
    /// once the commit that holds them is done. `None` if a patient with that id is registered
    /// already (then nothing is written).
    pub async fn register(&self, form: PatientForm, event: Envelope) -> Answer {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.inner.lock();
            queue.waiting.push(Waiting {
                form,
                event,
                answer,
            });
            !std::mem::replace(&mut queue.committing, true)
        };
        if start {
            // A task of its own, not this request's future: a client that hangs up must not
            // stop a commit that other requests are waiting for.
            tokio::spawn(self.inner.clone().commit_until_none_wait());
        }
        answered.await.unwrap_or_else(|_| {
            // The committing task ended without answering: it panicked (logged by tokio).
            Err(ApiError::Unavailable(
                "the registration could not be completed; retry later".into(),
            ))
        })
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn commit_until_none_wait(self: Arc<Self>) {
        // Should this task panic, the requests it leaves waiting are answered 503 (their
        // senders are dropped) and the next request starts a new task.
        let _reset = ResetOnPanic(&self);
        loop {
            let group = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.committing = false;
                    return;
                }
                take_group(&mut queue.waiting)
            };
            self.commit(group).await;
        }
    }

    async fn commit(&self, mut group: Vec<Waiting>) {
        // Tokens in the order of the events' ids (UUIDv7, so in time order), which is the
        // order the outbox relay publishes them in.
        group.sort_by_key(|waiting| waiting.event.id);
        match self.register_all(&group).await {
            Ok(answers) => self.answer(group, answers),
            // The server rejected the statement: perhaps because of one registration in it.
            // Each one alone, so that only a bad one fails.
            Err(sqlx::Error::Database(_)) if group.len() > 1 => {
                for waiting in group {
                    let answer = self.register_all(std::slice::from_ref(&waiting)).await;
                    let answer = answer
                        .map_err(ApiError::from)
                        .map(|mut issued| issued.pop());
                    self.answer_one(waiting, answer.map(Option::flatten));
                }
            }
            Err(error) => {
                // Logged once, by `From<sqlx::Error>`. (A data error is a `Database` error, so
                // it reaches here only for a group of one.)
                let mut first = Some(ApiError::from(error));
                for waiting in group {
                    let answer = first.take().unwrap_or_else(ApiError::database_unavailable);
                    let _ = waiting.answer.send(Err(answer));
                }
            }
        }
    }

    async fn register_all(
        &self,
        group: &[Waiting],
    ) -> Result<Vec<Option<IssuedToken>>, sqlx::Error> {
        let registrations: Vec<Registration> = group
            .iter()
            .map(|waiting| Registration {
                form: &waiting.form,
                event: &waiting.event,
            })
            .collect();
        token_counter::register_all(&self.pool, &self.site, &registrations).await
    }

    fn answer(&self, group: Vec<Waiting>, answers: Vec<Option<IssuedToken>>) {
        for (waiting, issued) in group.into_iter().zip(answers) {
            self.answer_one(waiting, Ok(issued));
        }
    }

    fn answer_one(&self, waiting: Waiting, answer: Answer) {
        if matches!(answer, Ok(Some(_))) {
            self.events_written.notify_one();
        }
        // A request whose client hung up no longer listens: its registration stands, as it
        // would have had the client hung up just after the commit.
        let _ = waiting.answer.send(answer);
    }
}

/// Takes the first [`MAX_GROUP`] waiting registrations.
fn take_group(waiting: &mut Vec<Waiting>) -> Vec<Waiting> {
    let rest = waiting.split_off(waiting.len().min(MAX_GROUP));
    std::mem::replace(waiting, rest)
}

/// Frees the queue for a new committing task if the current one panics.
struct ResetOnPanic<'a>(&'a Inner);

impl Drop for ResetOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.lock();
            queue.committing = false;
            queue.waiting.clear();
        }
    }
}
