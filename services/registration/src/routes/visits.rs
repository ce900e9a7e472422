//! Tokens for a registered patient's next visit, and the book's token reset.

use axum::Json;
use axum::extract::State;

use opd_shared::domain::PatientId;
use opd_shared::http::PathParam;
use opd_shared::http::error::ApiError;
use opd_shared::http::guard::SameSite;
use opd_shared::http::idempotency::Effect;
use opd_shared::http::openapi::{
    CrossSite, IdempotencyErrors, IdempotencyKey, PathErrors, Unavailable,
};
use opd_shared::http::problem::Problem;
use opd_shared::service::AppState;

use opd_shared::events::PatientRegistered;
use opd_shared::events::outbox::{Envelope, EventContext};

use super::unknown_patient;
use crate::token_counter::{self, IssuedToken, MAX_SKIP, Reset};

/// A token for a new visit of a registered patient.
///
/// Takes today's next token and publishes `patient.register` again, so the patient joins the
/// inspection queue as in a first visit.
#[utoipa::path(get, path = "/opd/patient/token/{id}", tag = "registration", operation_id = "issue_token",
    security(("bearer" = ["registrar"])),
    params(("id" = PatientId, Path, description = "The patient's id")),
    responses(
        (status = 200, description = "Today's next token; `patient.register` published",
            body = IssuedToken, example = json!({ "id": 200, "token": 2, "site": "hospital" })),
        (status = 404, description = "No patient with this id is registered \
            (`/problems/not-found`)", body = Problem, content_type = "application/problem+json"),
        CrossSite, PathErrors, Unavailable,
    ))]
#[tracing::instrument(skip(state, context))]
pub async fn next_visit(
    _: SameSite,
    state: State<AppState>,
    context: EventContext,
    id: PathParam<PatientId>,
) -> Result<Json<IssuedToken>, ApiError> {
    issue_token(state, Effect::default(), context, id).await
}

/// A token for a new visit of a registered patient: the proper method for it.
///
/// The same as the book's `GET`, as a `POST`, because it changes state: proxies and browsers
/// may repeat or prefetch a `GET`. With an `Idempotency-Key` header a repeat gets the first
/// token back instead of a second one.
#[utoipa::path(post, path = "/opd/patient/token/{id}", tag = "registration",
    security(("bearer" = ["registrar"])),
    operation_id = "issue_token_post",
    params(
        ("id" = PatientId, Path, description = "The patient's id"),
        IdempotencyKey,
    ),
    responses(
        (status = 200, description = "Today's next token; `patient.register` published",
            body = IssuedToken, example = json!({ "id": 200, "token": 2, "site": "hospital" })),
        (status = 404, description = "No patient with this id is registered \
            (`/problems/not-found`)", body = Problem, content_type = "application/problem+json"),
        IdempotencyErrors, PathErrors, Unavailable,
    ))]
#[tracing::instrument(skip(state, context))]
pub async fn next_visit_post(
    state: State<AppState>,
    effect: Effect,
    context: EventContext,
    id: PathParam<PatientId>,
) -> Result<Json<IssuedToken>, ApiError> {
    issue_token(state, effect, context, id).await
}

async fn issue_token(
    State(state): State<AppState>,
    effect: Effect,
    context: EventContext,
    PathParam(id): PathParam<PatientId>,
) -> Result<Json<IssuedToken>, ApiError> {
    let event = Envelope::new::<PatientRegistered>(&context);
    // A repeat would hand out another token: with a key, the key is marked in the same
    // transaction; without one, the single statement is its own transaction.
    let issued = if effect.is_keyed() {
        let mut tx = state.pool.begin().await?;
        let issued = token_counter::issue_for_visit(&mut *tx, &state.site, id, &event).await?;
        if issued.is_some() {
            effect.committed_in(&mut tx).await?;
        }
        tx.commit().await?;
        issued
    } else {
        token_counter::issue_for_visit(&state.pool, &state.site, id, &event).await?
    }
    .ok_or_else(|| unknown_patient(id))?;
    state.events_written();
    tracing::info!(token = issued.token, "token issued");
    Ok(Json(issued))
}

/// Makes today's token sequence continue after `n`.
///
/// The next token is `n + 1`, as in the book. `n` may go back as far as the last token handed
/// out today (undoing a mistaken reset), never below it, so that no token is handed out twice
/// in a day; and at most 10,000 beyond it.
#[utoipa::path(get, path = "/opd/patient/token/reset/{n}", tag = "registration", operation_id = "reset_tokens",
    security(("bearer" = ["operator"])),
    params(("n" = i64, Path, minimum = 0, maximum = 4_294_967_295_i64,
        description = "The last token to count as handed out today")),
    responses(
        (status = 200, description = "Reset", body = String, content_type = "application/json", example = json!("Token reset successful")),
        (status = 409, description = "Tokens above `n` were handed out today already, or `n` \
            is more than 10,000 past the last one (`/problems/conflict`)", body = Problem,
            content_type = "application/problem+json"),
        CrossSite, PathErrors, Unavailable,
    ))]
#[tracing::instrument(skip(state))]
pub async fn reset(
    _: SameSite,
    state: State<AppState>,
    n: PathParam<u32>,
) -> Result<Json<&'static str>, ApiError> {
    reset_tokens(state, n).await
}

/// Makes today's token sequence continue after `n`: the proper method for it.
///
/// The same as the book's `GET`, as a `POST`, because it changes state.
#[utoipa::path(post, path = "/opd/patient/token/reset/{n}", tag = "registration",
    security(("bearer" = ["operator"])),
    operation_id = "reset_tokens_post",
    params(
        ("n" = i64, Path, minimum = 0, maximum = 4_294_967_295_i64,
            description = "The last token to count as handed out today"),
        IdempotencyKey,
    ),
    responses(
        (status = 200, description = "Reset", body = String, content_type = "application/json",
            example = json!("Token reset successful")),
        (status = 409, description = "Tokens above `n` were handed out today already, or `n` \
            is more than 10,000 past the last one (`/problems/conflict`)", body = Problem,
            content_type = "application/problem+json"),
        IdempotencyErrors, PathErrors, Unavailable,
    ))]
#[tracing::instrument(skip(state))]
pub async fn reset_post(
    state: State<AppState>,
    n: PathParam<u32>,
) -> Result<Json<&'static str>, ApiError> {
    reset_tokens(state, n).await
}

async fn reset_tokens(
    State(state): State<AppState>,
    PathParam(n): PathParam<u32>,
) -> Result<Json<&'static str>, ApiError> {
    match token_counter::reset(&state.pool, i64::from(n)).await? {
        Reset::Done => Ok(Json("Token reset successful")),
        Reset::WouldRepeat { last_issued } => Err(ApiError::Conflict(format!(
            "tokens up to {last_issued} have already been handed out today; \
             the sequence can only continue from {last_issued} or higher"
        ))),
        Reset::TooFarAhead { last_issued } => Err(ApiError::Conflict(format!(
            "the last token handed out today is {last_issued}; the sequence can move at most \
             {MAX_SKIP} past it, to {}",
            last_issued + MAX_SKIP
        ))),
    }
}
