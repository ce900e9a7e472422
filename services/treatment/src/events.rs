//! What this service does with the events it consumes.

use sqlx::PgConnection;

use opd_shared::events::consumer::{EventHandler, HandlerError};
use opd_shared::events::{EventMeta, PatientSentForTreatment};

/// `patient.treatment` puts the patient in the treatment queue with inspection's instructions.
#[derive(Default)]
pub struct TreatmentHandler;

impl EventHandler for TreatmentHandler {
    type Event = PatientSentForTreatment;

    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: PatientSentForTreatment,
        meta: &EventMeta,
    ) -> Result<(), HandlerError> {
        sqlx::query!(
            "insert into treatment_queue (patient_id, medication, tests, notes, received_at)
             values ($1, $2, $3, $4, $5)",
            event.id.get(),
            event.medication.as_deref(),
            event.tests.as_deref(),
            event.notes.as_deref(),
            meta.time,
        )
        .execute(&mut *tx)
        .await?;
        tracing::info!(patient_id = %event.id.masked(), "patient waiting for treatment");
        Ok(())
    }
}
