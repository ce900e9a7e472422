//! Inspection's answer to "where is this patient?": their latest visit, and their place in the
//! queue while they wait.

use opd_shared::domain::{PatientId, Site};
use opd_shared::micro::{LocateFuture, Whereabouts};
use sqlx::PgPool;

pub fn locate(pool: PgPool, _: Site, id: PatientId) -> LocateFuture {
    Box::pin(async move {
        let row = sqlx::query!(
            r#"select v.token, v.site, v.registered_at, v.inspected_at,
                      (select count(*) from visits w
                       where w.inspected_at is null
                         and (w.registered_on, w.token, w.site)
                             < (v.registered_on, v.token, v.site)) as "ahead!"
               from visits v
               where v.patient_id = $1
               order by v.registered_on desc, v.token desc, v.site desc
               limit 1"#,
            id.get(),
        )
        .fetch_optional(&pool)
        .await?;
        Ok(row.map(|row| {
            let waiting = row.inspected_at.is_none();
            Whereabouts {
                arrived_at: row.registered_at,
                waiting,
                ahead: waiting.then_some(row.ahead),
                done_at: row.inspected_at,
                token: Some(row.token),
                // The column holds only valid names (its check), so this never drops one.
                site: Site::try_from(row.site).ok(),
            }
        }))
    })
}
