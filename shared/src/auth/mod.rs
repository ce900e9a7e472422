//! Who may call what over HTTP: bearer tokens (JWT) carrying the OPD's roles.
//!
//! Every operation declares the roles it needs in its `#[utoipa::path(security(...))]`, beside
//! its path; [`access::Access`] is read from the finished OpenAPI document, so the document and
//! the check cannot disagree. A request to an operation that needs roles must carry
//! `Authorization: Bearer <JWT>`, signed by a key of the configured JWKS document
//! ([`keys::Keys`]), for the configured issuer and audience, unexpired, and holding one of
//! the roles: otherwise 401 (no token, or a bad one) or 403 (the wrong role). The caller's
//! subject goes into the request's log context and onto the events it causes, never the
//! token.
//!
//! `auth.enabled = false` serves everyone as an anonymous caller with every role, for the book's
//! curl commands only; the service then says so at start-up, in every request's log context and
//! in `/readyz`.

pub mod access;
pub mod keys;
mod verified;

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The OPD's people, as the tokens name them (the `roles` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Registers patients and hands out the day's tokens (registration).
    Registrar,
    /// Inspects and treats patients (inspection, treatment).
    Clinician,
    /// Discharges patients (release).
    Discharge,
    /// Runs the platform: dead letters, resetting the day's tokens.
    Operator,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Registrar,
        Role::Clinician,
        Role::Discharge,
        Role::Operator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Registrar => "registrar",
            Role::Clinician => "clinician",
            Role::Discharge => "discharge",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown role {text:?}; the roles are {}",
                    Role::ALL.map(Role::as_str).join(", ")
                )
            })
    }
}

/// The OpenAPI security scheme every operation names: an HTTP bearer token, a JWT.
pub const SCHEME: &str = "bearer";

/// Who sent the request, as the verified token says; put in the request's extensions by
/// [`access::authorize`]. Handlers take it as an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`, or [`Caller::ANONYMOUS`] on an open route or with authentication off.
    pub subject: String,
    pub roles: Vec<Role>,
}

impl Caller {
    pub const ANONYMOUS: &'static str = "anonymous";

    pub(crate) fn anonymous(roles: Vec<Role>) -> Self {
        Self {
            subject: Self::ANONYMOUS.into(),
            roles,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(|| Caller::anonymous(Vec::new())))
    }
}
