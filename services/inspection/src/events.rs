//! What this service does with the events it consumes.

use sqlx::PgConnection;

use opd_shared::events::consumer::{EventHandler, HandlerError};
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
        let inserted = sqlx::query!(
            "insert into visits (registered_on, site, token, patient_id, registered_at)
             values (($1::timestamptz at time zone 'utc')::date, $2, $3, $4, $1)
             on conflict (registered_on, site, token) do nothing",
            meta.time,
            event.site.as_str(),
            event.token,
            event.id.get(),
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(HandlerError::Permanent(format!(
                "token {} of {} at {} was already given to another visit",
                event.token,
                meta.time.date_naive(),
                event.site
            )));
        }
        tracing::info!(patient_id = %event.id.masked(), token = event.token, site = %event.site, "patient waiting for inspection");
        Ok(())
    }
}
