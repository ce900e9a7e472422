//! Tokens for a registered patient's next visit, and the book's token reset.

use axum::Json;
use axum::extract::State;

use opd_shared::domain::PatientId;
use opd_shared::error::ApiError;
use opd_shared::http::{PathParam, RequestId};
use opd_shared::service::AppState;

use opd_shared::events::PatientRegistered;
use opd_shared::outbox::Envelope;

use super::unknown_patient;
use crate::token_counter::{self, IssuedToken, Reset};

/// A token for a new visit of a registered patient, announced as `patient.register`.
#[tracing::instrument(skip(state, request_id))]
pub async fn next_visit(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    PathParam(id): PathParam<PatientId>,
) -> Result<Json<IssuedToken>, ApiError> {
    let event = Envelope::new::<PatientRegistered>(&state.event_context(request_id));
    let issued = token_counter::issue_for_visit(&state.pool, id, &event)
        .await?
        .ok_or_else(|| unknown_patient(id))?;
    state.events_written();
    tracing::info!(token = issued.token, "token issued");
    Ok(Json(issued))
}

/// Makes today's sequence continue after `n`: the next token is `n + 1`, as in the book. It
/// only moves forward, so that no token is handed out twice in a day.
#[tracing::instrument(skip(state))]
pub async fn reset(
    State(state): State<AppState>,
    PathParam(n): PathParam<u32>,
) -> Result<Json<&'static str>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    match token_counter::reset(&mut conn, i64::from(n)).await? {
        Reset::Done => Ok(Json("Token reset successful")),
        Reset::WouldRepeat { last_issued } => Err(ApiError::Conflict(format!(
            "tokens up to {last_issued} have already been handed out today; \
             the sequence can only continue from {last_issued} or higher"
        ))),
    }
}
