//! The projection's consumer: reads the patient stream through the durable consumer
//! [`BOARD_DURABLE`] (its five subjects), merges each batch's events into their patients'
//! visits in the bucket, then acknowledges.
//!
//! Merging is commutative and idempotent ([`super::Visit::merge`]), so the consumer takes
//! batches like any other, and replicas share it freely. What must not happen is two merges of
//! the same visit overwriting each other: each write names the revision it merged into
//! (`Nats-Expected-Last-Subject-Sequence`), and a refused write reads the visit again and
//! merges again. That revision need not come from a read: a visit this instance wrote lately
//! is merged into as it wrote it ([`WrittenVisits`]), and a registration of a patient it does
//! not know is written as a new key (revision 0); either is refused if the bucket holds
//! something else. Nothing is acknowledged before the bucket has taken the batch's writes, so
//! nothing is lost; an event merged before finds its sequence in the visit and writes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, AckKind, consumer::pull, kv};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::{BoxFuture, join_all};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use opd_shared::events::consumer::{
    Outcome, Retried, Undecodable, bind_durable, decode, park, pull_messages, take_ready,
};
use opd_shared::events::{
    BOARD_BUCKET, BOARD_DURABLE, Event, PatientAdmissionRequested, PatientDischarged,
    PatientRegistered, PatientReleaseRequested, PatientSentForTreatment,
};
use opd_shared::http::health::{ConsumerState, Consumers};
use opd_shared::infra::Infra;
use opd_shared::infra::config::ConsumerSettings;
use opd_shared::infra::metrics::Metrics;
use opd_shared::infra::nats::StreamNeed;
use opd_shared::infra::retry::{Backoff, sleep_or_cancel};
use opd_shared::service::CustomConsumer;

use super::written::{Known, WrittenVisits};
use super::{Change, Stage, Visit, visit_key};

pub const CONSUMER: CustomConsumer = CustomConsumer {
    start,
    retry: retry_dead_letter,
};

fn start(
    durable: &'static str,
    infra: &Infra,
    shutdown: CancellationToken,
) -> BoxFuture<'static, ()> {
    Box::pin(Projector::new(durable, infra).run(shutdown))
}

/// A redelivered batch waits this long, so that a refused write is not retried at once.
const REDELIVERY_DELAY: Duration = Duration::from_secs(1);

pub struct Projector {
    durable: &'static str,
    jetstream: jetstream::Context,
    /// The patient stream's name (`nats.stream`).
    stream: String,
    pool: PgPool,
    settings: ConsumerSettings,
    states: Consumers,
    metrics: Arc<Metrics>,
    written: WrittenVisits,
}

/// Why a batch was not projected: the bucket could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct Failed {
    what: String,
    reason: String,
}

/// One visit's part of a batch: the messages' positions, and their changes with their stream
/// sequences.
type Merge = (Vec<usize>, Vec<(u64, Change)>);

/// How often a merge reads the visit again after another projector wrote it first. Each
/// refusal means another merge got through, so all of them end; the bound only turns a
/// runaway into an error (the batch then comes back).
const RACES: u64 = 100;

impl Projector {
    pub fn new(durable: &'static str, infra: &Infra) -> Self {
        Self {
            durable,
            jetstream: infra.jetstream.clone(),
            stream: infra.settings.nats.stream.clone(),
            pool: infra.pool.clone(),
            settings: infra.settings.consumer.clone(),
            states: infra.consumers.clone(),
            metrics: infra.metrics.clone(),
            written: WrittenVisits::new(),
        }
    }

    #[tracing::instrument(name = "board_projection", skip_all, fields(durable = self.durable))]
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::from_settings(self.settings.retry);
        while !shutdown.is_cancelled() {
            self.states.set(self.durable, ConsumerState::Binding);
            let (bucket, mut messages) = match self.start().await {
                Ok(started) => started,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot start the board's projection; retrying");
                    sleep_or_cancel(delay, &shutdown).await;
                    continue;
                }
            };
            self.states.set(self.durable, ConsumerState::Consuming);
            backoff.reset();
            tracing::info!("projecting the patient stream");
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => break,
                    next = messages.next() => next,
                };
                let failure = match next {
                    Some(Ok(first)) => {
                        let mut batch = vec![first];
                        let failure =
                            take_ready(&mut messages, &mut batch, self.settings.batch_size);
                        if let Err(error) = self.project(&bucket, batch).await {
                            // The batch comes back.
                            tracing::warn!(%error, "batch not projected; binding again");
                            sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                            break;
                        }
                        failure
                    }
                    Some(Err(error)) => Some(error),
                    None => break,
                };
                if let Some(error) = failure {
                    tracing::warn!(%error, "consumer stream failed; binding again");
                    sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                    break;
                }
            }
        }
        tracing::info!("projection stopped");
    }

    /// Binds the durable, opens the bucket, and starts pulling.
    async fn start(&self) -> anyhow::Result<(kv::Store, pull::Stream)> {
        let consumer = bind_durable(
            &self.jetstream,
            &self.stream,
            StreamNeed::Nothing,
            self.durable,
            BOARD_DURABLE.subjects,
            &self.states,
        )
        .await?;
        let bucket = self
            .jetstream
            .get_key_value(BOARD_BUCKET)
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "bucket {BOARD_BUCKET} is not available ({error}); the stream's owner \
                     creates it with `opd-nats stream`"
                )
            })?;
        // The bucket may have been made anew meanwhile: what is held was written to another.
        self.written.bind(bucket.stream.cached_info().created);
        let messages = pull_messages(&consumer, self.settings.batch_size).await?;
        Ok((bucket, messages))
    }

    /// Merges `batch` into the visits it concerns (each visit read once, written once), parks
    /// what can never apply, then acknowledges. An error means nothing was acknowledged and
    /// the batch comes back.
    async fn project(
        &self,
        bucket: &kv::Store,
        batch: Vec<jetstream::Message>,
    ) -> Result<(), Failed> {
        let started = Instant::now();
        if let Err(failed) = self.confirm_bucket(bucket).await {
            nak_all(&batch).await;
            return Err(failed);
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut by_visit: HashMap<i64, Merge> = HashMap::new();
        for (position, message) in batch.iter().enumerate() {
            let Ok(info) = message.info() else {
                outcomes.push((Outcome::Ignored, None));
                continue;
            };
            outcomes.push(match change_of(message) {
                Ok((time, change)) => {
                    let (positions, changes) = by_visit.entry(change.patient()).or_default();
                    positions.push(position);
                    changes.push((info.stream_sequence, change));
                    (Outcome::Duplicate, Some(time))
                }
                Err(Undecodable::Malformed(reason)) => (Outcome::Parked(reason), None),
                Err(Undecodable::Foreign(reason)) => {
                    tracing::error!(alert = "foreign-event", seq = info.stream_sequence, %reason, "an event not from its subject's producer; parking it");
                    (Outcome::Parked(reason), None)
                }
            });
        }
        let merged = join_all(by_visit.into_iter().map(
            |(patient, (positions, changes))| async move {
                // A failed merge leaves what is held as it was: if its write was taken after
                // all, the next write on the old revision is refused and reads the visit.
                let known = self.written.get(patient);
                let merged = merge_into(&self.jetstream, bucket, patient, &changes, known).await?;
                self.written.put(patient, merged.now);
                Ok::<_, Failed>(positions.into_iter().zip(merged.changed))
            },
        ))
        .await;
        for result in merged {
            match result {
                Ok(changed) => {
                    for (position, changed) in changed {
                        if changed {
                            outcomes[position].0 = Outcome::Applied;
                        }
                    }
                }
                Err(failed) => {
                    nak_all(&batch).await;
                    return Err(failed);
                }
            }
        }
        let mut handled = Vec::with_capacity(batch.len());
        let mut redelivered = 0;
        for (message, (outcome, time)) in batch.iter().zip(outcomes) {
            if message.info().is_ok_and(|info| info.delivered > 1) {
                redelivered += 1;
            }
            let outcome = match outcome {
                Outcome::Parked(reason) => self.park(message, reason).await,
                other => other,
            };
            match &outcome {
                Outcome::Retry(_) => nak(message).await,
                Outcome::Ignored => {}
                _ => {
                    if let Err(error) = message.ack().await {
                        // Merged: a redelivery finds its sequence in the visit.
                        tracing::warn!(%error, "acknowledgement not sent");
                    }
                }
            }
            let time = time.filter(|_| outcome == Outcome::Applied);
            handled.push((outcome.label(), time));
        }
        self.metrics
            .batch_consumed(self.durable, &handled, redelivered, started.elapsed());
        Ok(())
    }

    /// Makes sure the visits held were written to the bucket there is now, asking the bucket
    /// at most once every [`WrittenVisits::CONFIRM_EVERY`].
    async fn confirm_bucket(&self, bucket: &kv::Store) -> Result<(), Failed> {
        if !self.written.unconfirmed() {
            return Ok(());
        }
        let created = match bucket.stream.clone().info().await {
            Ok(info) => info.created,
            Err(error) => {
                return Err(Failed {
                    what: format!("confirming bucket {BOARD_BUCKET}"),
                    reason: error.to_string(),
                });
            }
        };
        if !self.written.confirm(created) {
            tracing::warn!(
                bucket = BOARD_BUCKET,
                "the bucket was made anew since the projection bound to it; the visits held for the old one are forgotten"
            );
        }
        Ok(())
    }

    /// Stores a message that can never apply in `dead_letters`; if that fails, it is retried.
    async fn park(&self, message: &jetstream::Message, reason: String) -> Outcome {
        let seq = message
            .info()
            .map(|info| info.stream_sequence)
            .unwrap_or_default();
        match park(&self.pool, self.durable, message, seq, &reason).await {
            Ok(()) => {
                tracing::error!(seq, %reason, "message parked in dead_letters");
                Outcome::Parked(reason)
            }
            Err(error) => Outcome::Retry(format!("cannot park the message ({reason}): {error}")),
        }
    }
}

/// What [`merge_into`] did.
#[derive(Debug)]
pub struct Merged {
    /// For each change, whether it changed the visit (false: merged before).
    pub changed: Vec<bool>,
    /// The visit as the bucket holds it now, as far as this merge knows.
    pub now: Known,
}

/// Merges `changes` (each with its stream sequence) into `patient`'s visit in `bucket`, and
/// writes it on condition that the bucket still holds what was merged into, again until that
/// holds. The first round merges into `known` when given (the visit as this instance last
/// wrote it); without it, a batch that starts with a registration merges into a new visit,
/// since most registrations are a patient's first, and anything else reads the visit first.
/// A refused write, or one with nothing left to write, reads the visit.
pub async fn merge_into(
    jetstream: &jetstream::Context,
    bucket: &kv::Store,
    patient: i64,
    changes: &[(u64, Change)],
    known: Option<Known>,
) -> Result<Merged, Failed> {
    let key = visit_key(patient);
    let failed = |reason: String| Failed {
        what: format!("merging into {key}"),
        reason,
    };
    let subject = format!(
        "{}{key}",
        bucket.put_prefix.as_deref().unwrap_or(&bucket.prefix)
    );
    let mut assumed = known.or_else(|| {
        matches!(changes.first(), Some((_, Change::Registered { .. }))).then(|| Known {
            visit: Visit::default(),
            revision: 0,
        })
    });
    // Writes refused after a read: another projector got through each time.
    let mut lost = 0;
    for _ in 0..=RACES {
        let read = assumed.is_none();
        let Known {
            mut visit,
            revision,
        } = match assumed.take() {
            Some(known) => known,
            None => {
                if lost > 0 {
                    // Lets the writer that won go first.
                    tokio::time::sleep(Duration::from_millis(lost.min(20))).await;
                }
                read_visit(bucket, &key).await.map_err(failed)?
            }
        };
        let changed: Vec<bool> = changes
            .iter()
            .map(|(seq, change)| visit.merge(*seq, change.clone()))
            .collect();
        if !changed.contains(&true) {
            if read {
                return Ok(Merged {
                    changed,
                    now: Known { visit, revision },
                });
            }
            // Merged before, as far as what is held says; what the bucket says decides (an
            // event merged into a key that has expired since is written again, as before).
            continue;
        }
        let payload = visit.to_json().map_err(|e| failed(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            revision.to_string().as_str(),
        );
        let written = match jetstream
            .publish_with_headers(subject.clone(), headers, payload)
            .await
        {
            Ok(ack) => ack.await,
            Err(error) => return Err(failed(error.to_string())),
        };
        match written {
            Ok(ack) => {
                return Ok(Merged {
                    changed,
                    now: Known {
                        visit,
                        revision: ack.sequence,
                    },
                });
            }
            // Another projector wrote it first, or it was not as assumed: read its value and
            // merge again.
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                lost += u64::from(read);
            }
            Err(error) => return Err(failed(error.to_string())),
        }
    }
    Err(failed(format!("written by others {RACES} times in a row")))
}

/// The visit under `key` and its revision (0: never written).
async fn read_visit(bucket: &kv::Store, key: &str) -> Result<Known, String> {
    match bucket.entry(key).await {
        Ok(Some(entry)) if entry.operation == kv::Operation::Put => Ok(Known {
            visit: Visit::parse(key, &entry.value).unwrap_or_else(|| {
                tracing::warn!(%key, "a visit this version cannot read; merging over it");
                Visit::default()
            }),
            revision: entry.revision,
        }),
        Ok(Some(entry)) => Ok(Known {
            visit: Visit::default(),
            revision: entry.revision,
        }),
        Ok(None) => Ok(Known {
            visit: Visit::default(),
            revision: 0,
        }),
        Err(error) => Err(error.to_string()),
    }
}

async fn nak_all(batch: &[jetstream::Message]) {
    for message in batch {
        nak(message).await;
    }
}

async fn nak(message: &jetstream::Message) {
    if let Err(error) = message.ack_with(AckKind::Nak(Some(REDELIVERY_DELAY))).await {
        tracing::debug!(%error, "negative acknowledgement not sent; redelivered after ack_wait");
    }
}

/// What `message` does to the board, with the time of its event.
fn change_of(message: &jetstream::Message) -> Result<(DateTime<Utc>, Change), Undecodable> {
    fn left<E: Event>(
        message: &jetstream::Message,
        id: impl Fn(&E) -> i64,
        from: Stage,
    ) -> Result<(DateTime<Utc>, Change), Undecodable> {
        let (meta, event) = decode::<E>(message)?;
        Ok((
            meta.time,
            Change::Left {
                patient: id(&event),
                from,
            },
        ))
    }
    match message.subject.as_str() {
        PatientRegistered::SUBJECT => {
            let (meta, event) = decode::<PatientRegistered>(message)?;
            Ok((
                meta.time,
                Change::Registered {
                    patient: event.id.get(),
                    token: event.token,
                    site: event.site,
                    day: meta.time.date_naive(),
                },
            ))
        }
        PatientSentForTreatment::SUBJECT => left(
            message,
            |e: &PatientSentForTreatment| e.id.get(),
            Stage::Inspection,
        ),
        PatientReleaseRequested::SUBJECT => left(
            message,
            |e: &PatientReleaseRequested| e.id.get(),
            Stage::Treatment,
        ),
        PatientDischarged::SUBJECT => {
            left(message, |e: &PatientDischarged| e.id.get(), Stage::Release)
        }
        PatientAdmissionRequested::SUBJECT => left(
            message,
            |e: &PatientAdmissionRequested| e.id.get(),
            Stage::Release,
        ),
        other => Err(Undecodable::Malformed(format!(
            "the board reads no events on {other}"
        ))),
    }
}

/// The operator's retry of one of the projection's dead letters. What it parks can never apply
/// (it does not decode, or comes from the wrong producer), and the projection applies events in
/// the stream's order only: the letter stays, and says so.
fn retry_dead_letter(pool: PgPool, durable: &'static str, id: i64) -> BoxFuture<'static, Retried> {
    Box::pin(async move {
        match sqlx::query_scalar!(
            "select reason from dead_letters where consumer = $1 and id = $2",
            durable,
            id
        )
        .fetch_optional(&pool)
        .await
        {
            Ok(None) => Retried::NotFound,
            Ok(Some(reason)) => Retried::StillParked(format!(
                "{reason}; the board applies events in the stream's order only, and the \
                 visit's next event puts it right"
            )),
            Err(error) => Retried::Unavailable(error.to_string()),
        }
    })
}
