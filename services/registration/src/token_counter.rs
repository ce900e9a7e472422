//! Queue tokens: a per-day sequence kept in the database.
//!
//! A token is handed out by the same single statement that creates its reason (registrations,
//! or a new visit of a registered patient) and writes the `patient.register` event announcing
//! it. Today's counter row is locked by the upsert that advances it until that statement's
//! transaction ends, inside PostgreSQL: never across a round trip to this service. It does
//! stay locked until the commit is on disk, though, so registrations are committed in groups
//! ([`crate::registrar`]): one flush of the write-ahead log for every registration that waited.
//!
//! The two statements below that issue tokens share their last three steps (counter, issued
//! token, outbox row) as literal SQL: `sqlx::query!` checks a statement against the schema only
//! when it is one string at compile time, and splitting the steps out would cost each
//! registration a round trip per step (docs/scaling.md measures the single statement).

use std::collections::HashMap;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use opd_shared::domain::{PatientId, Site};
use opd_shared::events::outbox::Envelope;

use crate::domain::PatientForm;

/// A token handed out to a patient: the book's `{"id", "token"}` answer with the site that gave
/// it, and the payload of `patient.register` (the statements below build that payload in SQL
/// with these three fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    pub id: PatientId,
    #[schema(minimum = 1)]
    pub token: i64,
    /// The site that gave the token: tokens count per site and day.
    #[schema(value_type = String, example = "hospital")]
    pub site: Site,
}

/// One registration to commit: the patient's record and its `patient.register` event.
pub struct Registration<'a> {
    pub form: &'a PatientForm,
    pub event: &'a Envelope,
}

/// Registers new patients in one statement and one commit, each with the day's next token
/// (in the order given) and its `patient.register` event. Returns the tokens of those who were
/// registered, one answer per registration in the same order: `None` for a patient whose id is
/// registered already, or given earlier in `registrations` (nothing is written for them).
///
/// One commit for many registrations is what lets them share a flush of the write-ahead log:
/// the day's counter row is locked until the commit is on disk, so registrations committed one
/// by one could never flush together (docs/benchmarks.md).
pub async fn register_all(
    pool: &PgPool,
    site: &Site,
    registrations: &[Registration<'_>],
) -> Result<Vec<Option<IssuedToken>>, sqlx::Error> {
    let Some(first) = registrations.first() else {
        return Ok(Vec::new());
    };
    // Every registration's event has the same subject, type and source.
    let (subject, event_type, source) = (
        first.event.subject,
        first.event.event_type,
        first.event.source,
    );
    let column = |field: fn(&Registration) -> Option<String>| {
        registrations.iter().map(field).collect::<Vec<_>>()
    };
    let issued = sqlx::query!(
        r#"with input as (
               select *
               from unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::bigint[], $7::text[], $8::uuid[], $9::text[], $10::text[],
                           $11::text[])
                    with ordinality as input (id, full_name, address, sex, email, phone,
                                              remarks, event_id, request_id, caller,
                                              traceparent, nth)
           ), candidate as (
               -- A patient id given twice: the first registration is the one made.
               select distinct on (id) * from input order by id, nth
           ), patient as (
               insert into patients (id, full_name, address, sex, email, phone, remarks)
               select id, full_name, address, sex, email, phone, remarks from candidate
               on conflict (id) do nothing
               returning id
           ), admitted as (
               -- Those who were not registered already, numbered in the order given.
               select candidate.*, row_number() over (order by candidate.nth) as place
               from candidate join patient using (id)
           ), counter as (
               insert into token_counters (day, last_token)
               select token_day(), count(*) from admitted having count(*) > 0
               on conflict (day) do update
                   set last_token = token_counters.last_token + excluded.last_token
               returning day, last_token
           ), issued as (
               insert into issued_tokens (day, token, patient_id)
               select counter.day,
                      counter.last_token - (select count(*) from admitted) + admitted.place,
                      admitted.id
               from admitted cross join counter
               returning token, patient_id
           ), announced as (
               insert into outbox (id, subject, event_type, source, request_id, caller,
                                   traceparent, payload)
               select admitted.event_id, $12, $13, $14, admitted.request_id, admitted.caller,
                      admitted.traceparent,
                      json_build_object('id', admitted.id, 'token', issued.token,
                                        'site', $15::text)
               from issued join admitted on admitted.id = issued.patient_id
           )
           select admitted.event_id as "event_id!", issued.token as "token!"
           from issued join admitted on admitted.id = issued.patient_id"#,
        &registrations
            .iter()
            .map(|r| r.form.id.get())
            .collect::<Vec<_>>(),
        &registrations
            .iter()
            .map(|r| r.form.full_name.as_str().to_owned())
            .collect::<Vec<_>>(),
        &column(|r| r.form.address.as_deref().map(str::to_owned)) as &[Option<String>],
        &column(|r| r.form.sex.map(|sex| sex.as_str().to_owned())) as &[Option<String>],
        &column(|r| r.form.email.as_ref().map(|email| email.as_str().to_owned()))
            as &[Option<String>],
        &registrations
            .iter()
            .map(|r| r.form.phone.map(|phone| phone.get()))
            .collect::<Vec<_>>() as &[Option<i64>],
        &column(|r| r.form.remarks.as_deref().map(str::to_owned)) as &[Option<String>],
        &registrations.iter().map(|r| r.event.id).collect::<Vec<_>>(),
        &column(|r| r.event.request_id.clone()) as &[Option<String>],
        &column(|r| r.event.caller.clone()) as &[Option<String>],
        &column(|r| r.event.traceparent.clone()) as &[Option<String>],
        subject,
        event_type,
        source,
        site.as_str(),
    )
    .fetch_all(pool)
    .await?;
    let tokens: HashMap<Uuid, i64> = issued
        .into_iter()
        .map(|row| (row.event_id, row.token))
        .collect();
    Ok(registrations
        .iter()
        .map(|registration| {
            tokens
                .get(&registration.event.id)
                .map(|&token| IssuedToken {
                    id: registration.form.id,
                    token,
                    site: site.clone(),
                })
        })
        .collect())
}

/// Hands a registered patient the day's next token for a new visit, with its
/// `patient.register` event. None if no patient has that id.
pub async fn issue_for_visit(
    executor: impl sqlx::PgExecutor<'_>,
    site: &Site,
    patient: PatientId,
    event: &Envelope,
) -> Result<Option<IssuedToken>, sqlx::Error> {
    let token = sqlx::query_scalar!(
        r#"with patient as (
               -- `for share` keeps the patient from being deleted under us.
               select id from patients where id = $1 for share
           ), counter as (
               insert into token_counters (day, last_token)
               select token_day(), 1 from patient
               on conflict (day) do update set last_token = token_counters.last_token + 1
               returning day, last_token
           ), issued as (
               insert into issued_tokens (day, token, patient_id)
               select day, last_token, $1 from counter
               returning token
           ), announced as (
               insert into outbox (id, subject, event_type, source, request_id, caller,
                                   traceparent, payload)
               select $2, $3, $4, $5, $6, $7, $8,
                      json_build_object('id', $1::bigint, 'token', token, 'site', $9::text)
               from issued
           )
           select token as "token!" from issued"#,
        patient.get(),
        event.id,
        event.subject,
        event.event_type,
        event.source,
        event.request_id,
        event.caller,
        event.traceparent,
        site.as_str(),
    )
    .fetch_optional(executor)
    .await?;
    Ok(token.map(|token| IssuedToken {
        id: patient,
        token,
        site: site.clone(),
    }))
}

/// How far past the last token handed out today a reset may move the sequence. A queue token
/// is a number called out in a waiting room: a jump of more than this is a slip of the finger
/// (or an attack), and would spoil the day's numbers for everyone after it.
pub const MAX_SKIP: i64 = 10_000;

/// The outcome of asking for the sequence to continue from `n`.
#[derive(Debug, PartialEq, Eq)]
pub enum Reset {
    /// The next token will be `n + 1`.
    Done,
    /// Tokens up to `last_issued` were already handed out today; going back would repeat them.
    WouldRepeat { last_issued: i64 },
    /// `n` is more than [`MAX_SKIP`] past the last token handed out today.
    TooFarAhead { last_issued: i64 },
}

/// Moves today's sequence so that the next token is `n + 1`: back as far as the last token
/// actually handed out today (so a mistaken reset can be undone), forward at most [`MAX_SKIP`]
/// beyond it. The bounds are checked against the tokens issued, not against the counter, which
/// a reset may have moved past them.
///
/// One transaction: `token_day()` reads its start time, so its statements agree on the day even
/// when midnight falls between them; and the counter row is locked first, so that no token is
/// issued between reading what was issued and moving the counter (issuing takes the same lock).
pub async fn reset(pool: &PgPool, n: i64) -> Result<Reset, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "insert into token_counters (day, last_token)
         values (token_day(), 0)
         on conflict (day) do update set last_token = token_counters.last_token"
    )
    .execute(&mut *tx)
    .await?;
    let last_issued = sqlx::query_scalar!(
        r#"select coalesce(max(token), 0) as "last_issued!"
           from issued_tokens where day = token_day()"#
    )
    .fetch_one(&mut *tx)
    .await?;
    if n < last_issued {
        return Ok(Reset::WouldRepeat { last_issued });
    }
    if n > last_issued + MAX_SKIP {
        return Ok(Reset::TooFarAhead { last_issued });
    }
    sqlx::query!(
        "update token_counters set last_token = $1 where day = token_day()",
        n
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Reset::Done)
}
