//! The roles each operation needs, read from the OpenAPI document, and the middleware that
//! checks a request's bearer token against them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::Operation;

use crate::auth::keys::Keys;
use crate::auth::{Caller, Role, SCHEME};
use crate::http::problem::Problem;

/// How a service tells who is calling.
pub enum Authenticator {
    /// Bearer tokens, checked with the issuer's keys (boxed: held inline, `Keys` would make
    /// the enum past clippy's 200 bytes for a variant, and `Off` holds nothing).
    Tokens(Box<Keys>),
    /// `auth.enabled = false`: every caller is anonymous and holds every role.
    Off,
}

/// What one operation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Anyone (`security(())`, e.g. the health routes and the home page).
    Open,
    /// A token with one of these roles. Empty when the operation declares no `security` at
    /// all: then nobody may call it, and the route-table test names it.
    AnyOf(Vec<Role>),
}

/// The roles of every operation of a service, by method and path template.
#[derive(Clone)]
pub struct Access {
    table: Arc<HashMap<(Method, String), Need>>,
    authenticator: Arc<Authenticator>,
}

impl Access {
    pub fn new(document: &OpenApi, authenticator: Arc<Authenticator>) -> Self {
        Self {
            table: Arc::new(table(document).into_iter().collect()),
            authenticator,
        }
    }
}

/// Every operation of `document` with what it needs, in the document's order.
pub fn table(document: &OpenApi) -> Vec<((Method, String), Need)> {
    let mut table = Vec::new();
    for (path, item) in &document.paths.paths {
        let operations = [
            (Method::GET, &item.get),
            (Method::PUT, &item.put),
            (Method::POST, &item.post),
            (Method::DELETE, &item.delete),
            (Method::PATCH, &item.patch),
            (Method::HEAD, &item.head),
            (Method::OPTIONS, &item.options),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                table.push(((method, path.clone()), need_of(operation)));
            }
        }
    }
    table
}

/// The roles an operation's `security` names under [`SCHEME`]; an empty requirement (`{}`)
/// among them makes it open.
fn need_of(operation: &Operation) -> Need {
    let Some(requirements) = &operation.security else {
        return Need::AnyOf(Vec::new());
    };
    let mut roles = Vec::new();
    for requirement in requirements {
        // The requirement's fields are private; its JSON form is the documented one.
        let Ok(serde_json::Value::Object(schemes)) = serde_json::to_value(requirement) else {
            continue;
        };
        if schemes.is_empty() {
            return Need::Open;
        }
        let named = schemes.get(SCHEME).and_then(serde_json::Value::as_array);
        // OpenAPI reads several roles in one requirement as all of them at once, which no
        // route here means: one role per requirement (`security(("bearer" = ["a"]), ("bearer"
        // = ["b"]))` is a or b). Anything else declares nobody, and the route test names it.
        if named.is_some_and(|named| named.len() > 1) {
            return Need::AnyOf(Vec::new());
        }
        roles.extend(
            named
                .into_iter()
                .flatten()
                .filter_map(|role| role.as_str()?.parse::<Role>().ok()),
        );
    }
    roles.sort();
    roles.dedup();
    Need::AnyOf(roles)
}

/// Lets a request through to its operation only with what the operation needs, and puts the
/// [`Caller`] in its extensions (and the caller's subject in the request's log context).
pub async fn authorize(State(access): State<Access>, mut request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_default();
    // axum answers HEAD with the GET handler.
    let method = match request.method() {
        &Method::HEAD => Method::GET,
        other => other.clone(),
    };
    let caller = match access.table.get(&(method, route.clone())) {
        None => {
            tracing::error!(route, "no access rule for this route; refused");
            return forbidden("this route declares no roles, so nobody may call it".into());
        }
        Some(Need::Open) => Caller::anonymous(Vec::new()),
        Some(Need::AnyOf(needed)) => match access.authenticator.as_ref() {
            Authenticator::Off => {
                tracing::Span::current().record("caller", "anonymous: authentication is off");
                Caller::anonymous(Role::ALL.to_vec())
            }
            Authenticator::Tokens(keys) => {
                let caller = match bearer_token(&request).map(|token| keys.verify(token)) {
                    None => {
                        return unauthorized(
                            None,
                            "this route needs a bearer token: Authorization: Bearer <JWT>",
                        );
                    }
                    Some(Err(refused)) => {
                        tracing::info!(reason = %refused, "bearer token refused");
                        return unauthorized(Some(&refused.0), &refused.0);
                    }
                    Some(Ok(caller)) => caller,
                };
                tracing::Span::current().record("caller", caller.subject.as_str());
                if !needed.iter().any(|role| caller.roles.contains(role)) {
                    tracing::info!(
                        caller = %caller.subject,
                        "refused: the caller has none of the route's roles"
                    );
                    return forbidden(format!(
                        "this route needs the role {}; the token of {:?} carries {}",
                        list(needed),
                        caller.subject,
                        if caller.roles.is_empty() {
                            "none".into()
                        } else {
                            list(&caller.roles)
                        }
                    ));
                }
                caller
            }
        },
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// `Authorization: Bearer <token>` (the scheme's name in any case), if present.
fn bearer_token(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

fn list(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|role| role.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// 401 with the challenge of RFC 6750: no `error` when no token was sent, `invalid_token`
/// (and why) when the one sent was refused.
fn unauthorized(error: Option<&str>, detail: &str) -> Response {
    let challenge = match error {
        None => r#"Bearer realm="opd""#.to_owned(),
        Some(why) => format!(
            r#"Bearer realm="opd", error="invalid_token", error_description="{}""#,
            quoted_text(why)
        ),
    };
    let mut response = Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized",
        detail,
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn forbidden(detail: String) -> Response {
    let mut response =
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="opd", error="insufficient_scope""#),
    );
    response
}

/// Text that may stand inside a quoted header parameter: printable ASCII without `"` or `\`.
fn quoted_text(text: &str) -> String {
    text.chars()
        .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
        .take(200)
        .collect()
}
