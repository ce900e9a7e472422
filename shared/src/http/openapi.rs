//! The OpenAPI 3.1 document of a service, generated from its handlers.
//!
//! Each handler carries a `#[utoipa::path]` attribute and is mounted with utoipa-axum's
//! `routes!`, which takes the route's path from that attribute: the router and the document are
//! built from one declaration, so they cannot disagree. This module adds what every service has
//! in common (the home page, the health routes, the problem details) and serves the document at
//! `/openapi.json` with a Swagger UI page at `/swagger-ui/` whose assets are compiled in.

use std::collections::BTreeMap;

use axum::Router;
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, InfoBuilder, OpenApi, RefOr, Response};
use utoipa::{IntoResponses, OpenApi as _, PartialSchema, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use crate::http::health;
use crate::http::problem::{self, Problem};
use crate::service::Service;

pub(crate) const DOCUMENT_PATH: &str = "/openapi.json";
pub(crate) const SWAGGER_UI_PATH: &str = "/swagger-ui";

#[derive(utoipa::OpenApi)]
#[openapi(paths(health::healthz, health::readyz), components(schemas(Problem)))]
struct Common;

/// The whole document of `service`: its own operations (`api`, split off its router), the home
/// page and the health routes.
pub fn document(service: &Service, mut api: OpenApi) -> OpenApi {
    api.info = InfoBuilder::new()
        .title(service.title)
        .version(service.version)
        .description(Some(format!(
            "The {} of the OPD platform. Errors are RFC 9457 problem details \
             (`application/problem+json`); docs/api.md explains each problem type.",
            service.title
        )))
        .build();
    api.paths.add_path_operation(
        service.home,
        vec![HttpMethod::Get],
        OperationBuilder::new()
            .tag(service.name)
            .operation_id(Some(format!("{}_home", service.name)))
            .summary(Some("The service's name and version, as in the book"))
            .security(SecurityRequirement::default())
            .response(
                "200",
                ResponseBuilder::new()
                    .description("Name and version")
                    .content(
                        "text/plain",
                        ContentBuilder::new()
                            .schema(Some(String::schema()))
                            .example(Some(serde_json::json!(format!(
                                "{} v{}\n",
                                service.title, service.version
                            ))))
                            .build(),
                    ),
            ),
    );
    api.merge(Common::openapi());
    add_guard_responses(&mut api);
    add_security(&mut api);
    api
}

/// The bearer-token scheme every operation's `security` names, and the two refusals of an
/// operation that needs a role.
fn add_security(api: &mut OpenApi) {
    api.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            crate::auth::SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT from the configured issuer whose roles claim holds one of the \
                         roles the operation names: registrar, clinician, discharge or operator \
                         (`opd-nats token ROLE` issues development tokens)",
                    ))
                    .build(),
            ),
        );
    let unauthorized = problem(
        "No bearer token, or one that is expired, not signed by the issuer or not for this \
         audience (`/problems/unauthorized`); `WWW-Authenticate` says which",
    );
    let forbidden =
        problem("The token carries none of the operation's roles (`/problems/forbidden`)");
    for item in api.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let open = operation.security.as_ref().is_some_and(|requirements| {
                requirements.iter().any(|requirement| {
                    serde_json::to_value(requirement).is_ok_and(|v| v == serde_json::json!({}))
                })
            });
            if open {
                continue;
            }
            let responses = &mut operation.responses.responses;
            responses.insert("401".into(), unauthorized.clone());
            // Also the cross-site refusal's status: one entry describes both.
            match responses.get_mut("403") {
                Some(RefOr::T(existing)) => {
                    existing.description = format!(
                        "{}; or a browser says a page of another site sent this request, which \
                         would change state (`/problems/cross-site`)",
                        "The token carries none of the operation's roles (`/problems/forbidden`)"
                    );
                }
                _ => {
                    responses.insert("403".into(), forbidden.clone());
                }
            }
        }
    }
}

/// The answers of the checks every request passes first ([`crate::http::guard`]): any operation
/// may refuse an unknown host, and any that changes state a cross-site request.
fn add_guard_responses(api: &mut OpenApi) {
    let unknown_host = problem(
        "The `Host` header names neither an IP address nor a name in `http.allowed_hosts` \
         (`/problems/unknown-host`)",
    );
    let cross_site = problem(
        "A browser says a page of another site sent this request, which would change state \
         (`/problems/cross-site`)",
    );
    for item in api.paths.paths.values_mut() {
        let reads = [&mut item.get, &mut item.head, &mut item.options];
        for operation in reads.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            responses.insert("421".into(), unknown_host.clone());
        }
        let changes = [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in changes.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            responses.insert("421".into(), unknown_host.clone());
            responses
                .entry("403".into())
                .or_insert_with(|| cross_site.clone());
        }
    }
}

/// The book's `GET`s that change state, checked as [`crate::http::guard::SameSite`].
pub struct CrossSite;

impl IntoResponses for CrossSite {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[(
            "403",
            "A browser says a page of another site sent this request, which would change \
             state (`/problems/cross-site`)",
        )])
    }
}

/// The routes that serve the document and the Swagger UI page.
pub fn routes(document: OpenApi) -> Router {
    Router::from(SwaggerUi::new(SWAGGER_UI_PATH).url(DOCUMENT_PATH, document))
}

/// A problem details response with the given description.
pub fn problem(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            problem::CONTENT_TYPE,
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    Problem::name(),
                ))))
                .build(),
        )
        .build()
        .into()
}

fn responses(list: &[(&str, &str)]) -> BTreeMap<String, RefOr<Response>> {
    list.iter()
        .map(|(status, description)| ((*status).to_owned(), problem(description)))
        .collect()
}

/// The errors of every handler that reads a JSON body.
pub struct BodyErrors;

impl IntoResponses for BodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[
            (
                "400",
                "The body is not JSON, is empty or has trailing characters \
                 (`/problems/malformed-json`), or the Idempotency-Key header is not 1 to 255 \
                 visible ASCII characters (`/problems/invalid-idempotency-key`)",
            ),
            (
                "413",
                "The body is larger than the service accepts (`/problems/payload-too-large`)",
            ),
            (
                "415",
                "The body is not sent as JSON: `Content-Type: application/json` is required \
                 (`/problems/unsupported-media-type`)",
            ),
            (
                "422",
                "A field is missing, of the wrong type or invalid; `field` names it \
                 (`/problems/invalid-field`)",
            ),
        ])
    }
}

/// The error of every handler with a path parameter.
pub struct PathErrors;

impl IntoResponses for PathErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[(
            "400",
            "A path parameter does not parse (`/problems/invalid-path-parameter`)",
        )])
    }
}

/// The error of every paginated list.
pub struct QueryErrors;

impl IntoResponses for QueryErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[(
            "400",
            "`limit` or `after` does not parse or is out of range \
             (`/problems/invalid-query-parameter`)",
        )])
    }
}

/// The error of every handler that uses the database.
pub struct Unavailable;

impl IntoResponses for Unavailable {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[(
            "503",
            "The database cannot be reached; retry later (`/problems/service-unavailable`)",
        )])
    }
}

/// The 404 of a handler whose patient this service has never heard of.
pub struct UnknownPatient;

impl IntoResponses for UnknownPatient {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[(
            "404",
            "This service has never heard of the patient; `detail` says how to get them here \
             (`/problems/not-found`)",
        )])
    }
}

/// The 409 of a handler that takes a patient off a waiting list they are not on.
pub struct NotWaiting;

impl IntoResponses for NotWaiting {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[(
            "409",
            "The patient is known here but not waiting now, e.g. already handled \
             (`/problems/conflict`)",
        )])
    }
}

/// The answers an `Idempotency-Key` adds to a POST (see [`crate::http::idempotency`]).
pub struct IdempotencyErrors;

impl IntoResponses for IdempotencyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[
            (
                "400",
                "The Idempotency-Key header is not 1 to 255 visible ASCII characters \
                 (`/problems/invalid-idempotency-key`)",
            ),
            (
                "409",
                "The Idempotency-Key was used for another request \
                 (`/problems/idempotency-key-reused`), its first request is still running \
                 (`/problems/request-in-progress`), or took effect but its answer was lost when \
                 the service stopped (`/problems/answer-lost`)",
            ),
        ])
    }
}

/// The `Idempotency-Key` header every POST accepts: `params(IdempotencyKey)`.
pub struct IdempotencyKey;

impl utoipa::IntoParams for IdempotencyKey {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        vec![
            ParameterBuilder::new()
                .name(crate::http::idempotency::HEADER)
                .parameter_in(ParameterIn::Header)
                .required(utoipa::openapi::Required::False)
                .description(Some(
                    "Any unique string, e.g. a UUID: a repeat with it gets the first answer \
                     instead of repeating the request",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(255))
                        .pattern(Some("^[!-~]+$")),
                ))
                .build(),
        ]
    }
}
