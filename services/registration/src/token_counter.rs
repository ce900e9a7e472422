//! Queue tokens: a per-day sequence kept in the database.

use serde::Serialize;
use sqlx::PgConnection;

use opd_shared::domain::PatientId;

/// A token handed out to a patient: the book's `{"id", "token"}` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IssuedToken {
    pub id: PatientId,
    pub token: i64,
}

/// Hands out the next token of the day to `patient`, inside the caller's transaction. The
/// upsert locks today's counter row until the transaction ends, which serialises concurrent
/// requests from any number of replicas.
pub async fn issue(tx: &mut PgConnection, patient: PatientId) -> Result<IssuedToken, sqlx::Error> {
    let issued = sqlx::query!(
        "insert into token_counters (day, last_token)
         values (token_day(), 1)
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
    Ok(IssuedToken {
        id: patient,
        token: issued.last_token,
    })
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
         values (token_day(), $1)
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
    let last_issued =
        sqlx::query_scalar!("select last_token from token_counters where day = token_day()",)
            .fetch_one(&mut *conn)
            .await?;
    Ok(Reset::WouldRepeat { last_issued })
}
