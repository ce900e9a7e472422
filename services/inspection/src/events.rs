//! What this service does with the events it consumes.

use std::collections::HashSet;

use sqlx::PgConnection;
use sqlx::types::chrono::{DateTime, NaiveDate, Utc};

use opd_shared::events::consumer::{EventHandler, HandlerError, Received};
use opd_shared::events::{EventMeta, PatientRegistered};

/// `patient.register` puts the patient in the queue for inspection. The day of the token is the
/// UTC day of the event, the same day registration counted it in; its site is the one that
/// counted it (tokens count per site and day).
#[derive(Default)]
pub struct RegistrationHandler;

impl EventHandler for RegistrationHandler {
    type Event = PatientRegistered;

    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: PatientRegistered,
        meta: &EventMeta,
    ) -> Result<(), HandlerError> {
        let received = Received {
            meta: meta.clone(),
            event,
            span: tracing::Span::current(),
        };
        self.handle_all(tx, vec![received]).await
    }

    /// A backlog is drained a batch per statement: the visits of a whole batch are inserted
    /// together, in the order their events arrived.
    async fn handle_all(
        &self,
        tx: &mut PgConnection,
        events: Vec<Received<PatientRegistered>>,
    ) -> Result<(), HandlerError> {
        let times: Vec<DateTime<Utc>> = events.iter().map(|r| r.meta.time).collect();
        let sites: Vec<&str> = events.iter().map(|r| r.event.site.as_str()).collect();
        let tokens: Vec<i64> = events.iter().map(|r| r.event.token).collect();
        let patients: Vec<i64> = events.iter().map(|r| r.event.id.get()).collect();
        let inserted: HashSet<(NaiveDate, String, i64)> = sqlx::query!(
            r#"insert into visits (registered_on, site, token, patient_id, registered_at)
               select (registered_at at time zone 'utc')::date, site, token, patient_id,
                      registered_at
               from unnest($1::timestamptz[], $2::text[], $3::bigint[], $4::bigint[])
                    with ordinality as batch (registered_at, site, token, patient_id, arrival)
               order by arrival
               on conflict (registered_on, site, token) do nothing
               returning registered_on as "registered_on!", site as "site!", token as "token!""#,
            &times,
            &sites as &[&str],
            &tokens,
            &patients,
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| (row.registered_on, row.site, row.token))
        .collect();
        // A visit not inserted had its token taken already: by an earlier visit, or by another
        // event of this batch.
        let mut seen = HashSet::with_capacity(events.len());
        for Received { meta, event, span } in &events {
            let key = (
                meta.time.date_naive(),
                event.site.as_str().to_owned(),
                event.token,
            );
            if !inserted.contains(&key) || !seen.insert(key) {
                return Err(HandlerError::Permanent(format!(
                    "token {} of {} at {} was already given to another visit",
                    event.token,
                    meta.time.date_naive(),
                    event.site
                )));
            }
            span.in_scope(|| {
                tracing::info!(patient_id = %event.id.masked(), token = event.token, site = %event.site, "patient waiting for inspection");
            });
        }
        Ok(())
    }
}
