//! What a request must be before any route sees it, against attacks that come through a
//! browser: a page on another site posting to the API (cross-site request forgery), or a name
//! of the attacker's resolving to the service (DNS rebinding), and against request ids that
//! would carry anything into logs and events.
//!
//! - **Host.** The `Host` header must be an IP address or a name in `http.allowed_hosts`; any
//!   other is answered `421`. A rebinding attack reaches the service under the attacker's own
//!   name, so its requests carry that name.
//! - **Cross-site.** A request that changes state (any method but `GET`, `HEAD`, `OPTIONS`) is
//!   refused with `403` when the browser says it comes from another site: `Sec-Fetch-Site` is
//!   `cross-site` or `same-site`, or, from a browser too old to send that, its `Origin` is not
//!   the host it is sent to. The book's state-changing `GET`s take [`SameSite`] for the same
//!   check. Clients that are not browsers (curl, services) send neither header and pass.
//! - **Request ids.** A client's `x-request-id` is kept only if it is 1 to 64 characters of
//!   letters, digits and `-._:`; otherwise a fresh one replaces it.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::problem::Problem;

/// `http.allowed_hosts` as the guard reads it.
#[derive(Debug, Clone)]
pub(crate) struct Hosts {
    any: bool,
    names: Arc<[String]>,
}

impl Hosts {
    /// `*` among the names allows any host (DNS rebinding is then the proxy's to stop).
    pub(crate) fn new(names: &[String]) -> Self {
        Self {
            any: names.iter().any(|name| name == "*"),
            names: names.iter().map(|name| name.to_ascii_lowercase()).collect(),
        }
    }

    fn allow(&self, host: &str) -> bool {
        let name = host_name(host);
        self.any || name.parse::<IpAddr>().is_ok() || self.names.contains(&name)
    }
}

/// The name in a `Host` header, without its port or an IPv6 address's brackets, lower case.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.to_ascii_lowercase()
}

/// Whether a browser says this request was made by a page of another site.
fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or_default();
    let origin = origin.to_str().unwrap_or("null");
    // `scheme://host[:port]`; "null" (a sandboxed or file page) is never the same site.
    origin
        .split_once("://")
        .is_none_or(|(_, authority)| !authority.eq_ignore_ascii_case(host))
}

fn unknown_host(host: &str) -> Response {
    Problem::new(
        StatusCode::MISDIRECTED_REQUEST,
        "unknown-host",
        "Unknown host",
        format!(
            "this service does not answer to the name {:?}; add it to http.allowed_hosts if it \
             is one of the service's own names",
            host_name(host)
        ),
    )
    .into_response()
}

fn refused_cross_site() -> Response {
    Problem::new(
        StatusCode::FORBIDDEN,
        "cross-site",
        "Cross-site request",
        "a page of another site cannot change anything here; send the request from the \
         platform's own pages or from a client that is not a browser",
    )
    .into_response()
}

/// The middleware: refuses unknown hosts and cross-site requests that change state.
pub(crate) async fn guard(State(hosts): State<Hosts>, request: Request, next: Next) -> Response {
    if let Some(host) = request
        .headers()
        .get(header::HOST)
        .map(|host| host.to_str().unwrap_or("\u{fffd}"))
        && !hosts.allow(host)
    {
        return unknown_host(host);
    }
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe && cross_site(request.headers()) {
        return refused_cross_site();
    }
    next.run(request).await
}

/// For a `GET` that changes state (the book's token routes): refused like any other
/// state-changing request when a page of another site makes it (an `<img>` tag would).
#[derive(Debug, Clone, Copy)]
pub struct SameSite;

impl<S: Send + Sync> FromRequestParts<S> for SameSite {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if cross_site(&parts.headers) {
            Err(refused_cross_site())
        } else {
            Ok(Self)
        }
    }
}

/// The longest `x-request-id` kept from a client.
const REQUEST_ID_MAX: usize = 64;

fn acceptable_request_id(value: &[u8]) -> bool {
    (1..=REQUEST_ID_MAX).contains(&value.len())
        && value
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._:".contains(byte))
}

/// Drops a client's `x-request-id` that is too long or holds other characters, so that the
/// next layer gives the request a fresh one: the id goes into every log line, the outbox and
/// every event's headers.
pub(crate) async fn sanitize_request_id(mut request: Request, next: Next) -> Response {
    let headers = request.headers_mut();
    let mut given = headers.get_all(super::REQUEST_ID_HEADER).iter();
    // None, or exactly one that is acceptable.
    let keep = match (given.next(), given.next()) {
        (None, _) => true,
        (Some(one), None) => acceptable_request_id(one.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        headers.remove(super::REQUEST_ID_HEADER);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn browsers_say_where_a_request_comes_from() {
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!cross_site(&headers(&[("sec-fetch-site", "none")])));
        // Older browsers: Origin against Host.
        let from = |origin| headers(&[("origin", origin), ("host", "localhost:9090")]);
        assert!(cross_site(&from("https://evil.example")));
        assert!(cross_site(&from("null")));
        assert!(cross_site(&from("http://localhost:9091")));
        assert!(!cross_site(&from("http://localhost:9090")));
        // curl, services: neither header.
        assert!(!cross_site(&headers(&[("host", "localhost:9090")])));
    }

    #[test]
    fn hosts_are_names_on_the_list_or_addresses() {
        let hosts = Hosts::new(&["localhost".into(), "registration".into()]);
        for allowed in [
            "localhost:9090",
            "LOCALHOST",
            "registration:9090",
            "127.0.0.1:9090",
            "10.1.2.3",
            "[::1]:9090",
        ] {
            assert!(hosts.allow(allowed), "{allowed}");
        }
        for refused in ["evil.example:9090", "localhost.evil.example", ""] {
            assert!(!hosts.allow(refused), "{refused}");
        }
        assert!(Hosts::new(&["*".into()]).allow("anything.example"));
    }

    #[test]
    fn request_ids_are_short_and_plain() {
        assert!(acceptable_request_id(
            b"0190b7c2-7d6e-7f3a-9c1e-1234567890ab"
        ));
        assert!(acceptable_request_id(b"desk-3:42"));
        assert!(!acceptable_request_id(b""));
        assert!(!acceptable_request_id(&[b'a'; 65]));
        assert!(!acceptable_request_id(b"id with spaces"));
        assert!(!acceptable_request_id(b"id\"},{\"forged\":1"));
    }
}
