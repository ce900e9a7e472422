//! Queue tokens: a per-day sequence kept in the database.
//!
//! A token is handed out by the same single statement that creates its reason (a registration,
//! or a new visit of a registered patient) and writes the `patient.register` event announcing
//! it. Today's counter row is locked by the upsert that advances it until that statement's
//! implicit transaction ends, inside PostgreSQL: never across a round trip to this service, so
//! concurrent requests from any number of replicas queue on it only for microseconds.
//!
//! The two statements below share their last three steps (counter, issued token, outbox row)
//! as literal SQL: `sqlx::query!` checks a statement against the schema only when it is one
//! string at compile time, and splitting the steps out would cost each registration a round trip
//! per step (docs/scaling.md measures the single statement).

use serde::Serialize;
use sqlx::PgPool;

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

/// Registers a new patient with the day's next token and its `patient.register` event. None if
/// a patient with that id is registered already (then nothing is written).
pub async fn register(
    pool: &PgPool,
    site: &Site,
    form: &PatientForm,
    event: &Envelope,
) -> Result<Option<IssuedToken>, sqlx::Error> {
    let token = sqlx::query_scalar!(
        r#"with patient as (
               insert into patients (id, full_name, address, sex, email, phone, remarks)
               values ($1, $2, $3, $4, $5, $6, $7)
               on conflict (id) do nothing
               returning id
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
               select $8, $9, $10, $11, $12, $13, $14,
                      json_build_object('id', $1::bigint, 'token', token, 'site', $15::text)
               from issued
           )
           select token as "token!" from issued"#,
        form.id.get(),
        form.full_name.as_str(),
        form.address.as_deref(),
        form.sex.map(|sex| sex.as_str()),
        form.email.as_ref().map(|email| email.as_str()),
        form.phone.map(|phone| phone.get()),
        form.remarks.as_deref(),
        event.id,
        event.subject,
        event.event_type,
        event.source,
        event.request_id,
        event.caller,
        event.traceparent,
        site.as_str(),
    )
    .fetch_optional(pool)
    .await?;
    Ok(token.map(|token| IssuedToken {
        id: form.id,
        token,
        site: site.clone(),
    }))
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
