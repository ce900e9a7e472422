//! The reception desk's question to the whole platform: where is this patient now?

use axum::Json;
use axum::extract::State;

use opd_shared::domain::PatientId;
use opd_shared::http::PathParam;
use opd_shared::http::error::ApiError;
use opd_shared::http::openapi::PathErrors;
use opd_shared::http::problem::Problem;
use opd_shared::micro::ask::{self, Answers};
use opd_shared::service::AppState;

/// Where a patient is, as every service says.
///
/// Asks every service at once over NATS (the broadcast query `opd.where`) and gathers their
/// answers until `nats.query_deadline`: each service says whether it knows the patient and
/// where they are in its queue. A service that does not answer in time is `not-answering`,
/// which says nothing about the patient.
#[utoipa::path(get, path = "/opd/patient/where/{id}", tag = "registration",
    operation_id = "where_is_patient",
    security(("bearer" = ["registrar"]), ("bearer" = ["clinician"]), ("bearer" = ["discharge"])),
    params(("id" = PatientId, Path, description = "The patient's id")),
    responses(
        (status = 200, description = "Every service's answer (`here`, `not-here`, `error`) or \
            `not-answering`", body = Answers),
        (status = 503, description = "NATS cannot be reached, so no service can be asked \
            (`/problems/service-unavailable`)", body = Problem,
            content_type = "application/problem+json"),
        PathErrors,
    ))]
#[tracing::instrument(skip(state))]
pub async fn where_is(
    State(state): State<AppState>,
    PathParam(id): PathParam<PatientId>,
) -> Result<Json<Answers>, ApiError> {
    ask::where_is(&state.nats, id, state.query_deadline)
        .await
        .map(Json)
        .map_err(|error| ApiError::Unavailable(format!("asking over NATS failed: {error}")))
}
