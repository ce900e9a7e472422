//! What this service does with the events it consumes.

use sqlx::PgConnection;

use opd_shared::events::consumer::{EventHandler, HandlerError};
use opd_shared::events::{EventMeta, PatientRegistered};

/// `patient.register` puts the patient in the queue for inspection. The day of the token is the
/// UTC day of the event, the same day registration counted it in.
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
            "insert into visits (registered_on, token, patient_id, registered_at)
             values (($1::timestamptz at time zone 'utc')::date, $2, $3, $1)
             on conflict (registered_on, token) do nothing",
            meta.time,
            event.token,
            event.id.get(),
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(HandlerError::Permanent(format!(
                "token {} of {} was already given to another visit",
                event.token,
                meta.time.date_naive()
            )));
        }
        tracing::info!(patient_id = %event.id.masked(), token = event.token, "patient waiting for inspection");
        Ok(())
    }
}
