//! Registration's answer to "where is this patient?": registered, and today's token if any.

use opd_shared::domain::{PatientId, Site};
use opd_shared::micro::{LocateFuture, Whereabouts};
use sqlx::PgPool;

pub fn locate(pool: PgPool, site: Site, id: PatientId) -> LocateFuture {
    Box::pin(async move {
        let row = sqlx::query!(
            r#"select p.registered_at, t.token as "token?", t.issued_at as "issued_at?"
               from patients p
               left join lateral (
                   select token, issued_at from issued_tokens
                   where patient_id = p.id and day = token_day()
                   order by token desc limit 1
               ) t on true
               where p.id = $1"#,
            id.get(),
        )
        .fetch_optional(&pool)
        .await?;
        Ok(row.map(|row| Whereabouts {
            // Registration is not a queue: the patient passed it when they got their token.
            arrived_at: row.issued_at.unwrap_or(row.registered_at),
            waiting: false,
            ahead: None,
            done_at: None,
            // Its tokens are all this instance's site's.
            site: row.token.map(|_| site.clone()),
            token: row.token,
        }))
    })
}
