//! Treatment's answer to "where is this patient?": their latest arrival, and their place in the
//! queue while they wait.

use opd_shared::domain::{PatientId, Site};
use opd_shared::micro::{LocateFuture, Whereabouts};
use sqlx::PgPool;

pub fn locate(pool: PgPool, _: Site, id: PatientId) -> LocateFuture {
    Box::pin(async move {
        let row = sqlx::query!(
            r#"select q.received_at, q.treated_at as done_at,
                      (select count(*) from treatment_queue w
                       where w.treated_at is null and w.id < q.id) as "ahead!"
               from treatment_queue q
               where q.patient_id = $1
               order by q.id desc
               limit 1"#,
            id.get(),
        )
        .fetch_optional(&pool)
        .await?;
        Ok(row.map(|row| {
            let waiting = row.done_at.is_none();
            Whereabouts {
                arrived_at: row.received_at,
                waiting,
                ahead: waiting.then_some(row.ahead),
                done_at: row.done_at,
                token: None,
                site: None,
            }
        }))
    })
}
