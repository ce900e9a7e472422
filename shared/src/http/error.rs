//! The error enum of the HTTP boundary. Handlers return `Result<_, ApiError>`; each variant maps
//! to one problem type and status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::http::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all (400).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The JSON is well formed but a field is missing or invalid (422).
    #[error("invalid field {field}: {message}")]
    InvalidField { field: String, message: String },
    /// A path parameter does not parse (400).
    #[error("invalid path parameter: {0}")]
    InvalidPath(String),
    /// A query parameter does not parse or is out of range (400).
    #[error("invalid query parameter: {0}")]
    InvalidQuery(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than this service accepts")]
    PayloadTooLarge,
    /// The body is not sent as JSON (415).
    #[error(
        "send the body as JSON, with the header Content-Type: application/json \
         (http.accept_form_encoded_json also takes a form-encoded body, as curl -d sends it)"
    )]
    UnsupportedMediaType,
    /// A dependency (the database) cannot be reached; the client may retry (503).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A defect on our side. Logged in full, reported without internals (500).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub(crate) fn to_problem(&self) -> Problem {
        match self {
            Self::MalformedJson(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                detail.clone(),
            ),
            Self::InvalidField { field, message } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                "Invalid field",
                if field.is_empty() {
                    message.clone()
                } else {
                    format!("{field}: {message}")
                },
            )
            .with_field(field.clone()),
            Self::InvalidPath(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-path-parameter",
                "Invalid path parameter",
                detail.clone(),
            ),
            Self::InvalidQuery(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-query-parameter",
                "Invalid query parameter",
                detail.clone(),
            ),
            Self::NotFound(detail) => Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                detail.clone(),
            ),
            Self::Conflict(detail) => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", detail.clone())
            }
            Self::PayloadTooLarge => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                self.to_string(),
            ),
            Self::UnsupportedMediaType => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                self.to_string(),
            ),
            Self::Unavailable(detail) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "Service unavailable",
                detail.clone(),
            ),
            Self::Internal(_) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-error",
                "Internal error",
                "an unexpected error occurred; it has been logged",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Where the database could not serve a request, `From<sqlx::Error>` logged the cause.
        if let Self::Internal(error) = &self {
            tracing::error!(error = ?error, "request failed");
        }
        self.to_problem().into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    /// A data error reaching the database means a check is missing here: a defect (500). Any
    /// other database error, known or not (down, read-only, a column missing during a rolling
    /// deploy), is the database not serving us now: 503, and the client may retry. Neither
    /// sends the database's text to the client; the log has it.
    fn from(error: sqlx::Error) -> Self {
        if crate::infra::db::is_data_error(&error) {
            Self::Internal(anyhow::Error::new(error).context("database query failed"))
        } else {
            tracing::warn!(%error, "database error");
            Self::database_unavailable()
        }
    }
}

impl ApiError {
    /// The answer to a request the database could not serve: 503, retry later.
    pub fn database_unavailable() -> Self {
        Self::Unavailable("the database cannot serve this request right now; retry later".into())
    }
}
