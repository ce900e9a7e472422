//! RFC 9457 problem details: the one error shape of every HTTP API here.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem details document. `kind` becomes the `type` member: a relative URI under
/// `/problems/` that docs/api.md explains.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "/problems/invalid-field",
    "title": "Invalid field",
    "status": 422,
    "detail": "full_name: must not be empty",
    "field": "full_name"
}))]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    pub detail: String,
    /// For invalid input: the JSON path of the offending field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    pub(crate) fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The response, telling the client to try again in `after` (`Retry-After`, whole seconds,
    /// at least one).
    pub fn retry_after(self, after: std::time::Duration) -> Response {
        let mut response = self.into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from(after.as_secs().max(1)),
        );
        response
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        match serde_json::to_vec(&self) {
            Ok(body) => (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
            // A struct of strings always serialises; keep the status even if it ever did not.
            Err(_) => status.into_response(),
        }
    }
}
