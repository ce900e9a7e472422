//! Queue tokens: a per-day sequence kept in the database.

use sqlx::PgConnection;

use opd_shared::domain::PatientId;

/// Hands out the next token of the day to `patient`, inside the caller's transaction. The
/// upsert locks today's counter row until the transaction ends, which serialises concurrent
/// requests from any number of replicas.
pub async fn issue(tx: &mut PgConnection, patient: PatientId) -> Result<i64, sqlx::Error> {
    let issued = sqlx::query!(
        "insert into token_counters (day, last_token)
         values ((now() at time zone 'utc')::date, 1)
         on conflict (day) do update set last_token = token_counters.last_token + 1
         returning day, last_token",
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!(
        "insert into issued_tokens (day, token, patient_id) values ($1, $2, $3)",
        issued.day,
        issued.last_token,
        patient.get(),
    )
    .execute(&mut *tx)
    .await?;
    Ok(issued.last_token)
}

/// The outcome of asking for the sequence to continue from `n`.
#[derive(Debug, PartialEq, Eq)]
pub enum Reset {
    /// The next token will be `n + 1`.
    Done,
    /// Tokens up to `last_issued` were already handed out today; going back would repeat them.
    WouldRepeat { last_issued: i64 },
}

pub async fn reset(conn: &mut PgConnection, n: i64) -> Result<Reset, sqlx::Error> {
    let moved = sqlx::query_scalar!(
        "insert into token_counters (day, last_token)
         values ((now() at time zone 'utc')::date, $1)
         on conflict (day) do update set last_token = excluded.last_token
         where token_counters.last_token <= excluded.last_token
         returning last_token",
        n,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if moved.is_some() {
        return Ok(Reset::Done);
    }
    let last_issued = sqlx::query_scalar!(
        "select last_token from token_counters where day = (now() at time zone 'utc')::date",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Reset::WouldRepeat { last_issued })
}
