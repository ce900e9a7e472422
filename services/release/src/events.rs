//! What this service does with the events it consumes.

use sqlx::PgConnection;

use opd_shared::events::consumer::{EventHandler, HandlerError};
use opd_shared::events::{EventMeta, PatientReleaseRequested};

/// `patient.release` puts the patient in the queue for discharge.
#[derive(Default)]
pub struct ReleaseHandler;

impl EventHandler for ReleaseHandler {
    type Event = PatientReleaseRequested;

    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: PatientReleaseRequested,
        meta: &EventMeta,
    ) -> Result<(), HandlerError> {
        sqlx::query!(
            "insert into release_queue
                 (patient_id, time, next_state, post_medication, notes, received_at)
             values ($1, $2, $3, $4, $5, $6)",
            event.id.get(),
            event.time.as_str(),
            event.next_state.as_str(),
            event.post_medication.as_deref(),
            event.notes.as_deref(),
            meta.time,
        )
        .execute(&mut *tx)
        .await?;
        tracing::info!(patient_id = %event.id.masked(), "patient waiting for release");
        Ok(())
    }
}
