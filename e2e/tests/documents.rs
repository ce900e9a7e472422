//! The Postman collection and the OpenAPI documents describe the same API: every request in the
//! collection is a documented operation of the service it calls, and every documented operation
//! is stepped through by the collection.

use std::collections::BTreeSet;

use opd_shared::app::openapi;
use opd_shared::service::Service;
use serde_json::Value;

const COLLECTION: &str = include_str!("../../postman/opd.postman_collection.json");
const ENVIRONMENT: &str = include_str!("../../postman/local.postman_environment.json");

/// Requests of the error folder that call routes on purpose that do not exist.
const DELIBERATELY_UNDOCUMENTED: [&str; 2] = ["No such route", "Wrong method"];

/// The routes of the health checks, for orchestrators rather than for the walkthrough, and the
/// board's event stream, which never ends (the board's browser walkthrough follows it).
const NOT_IN_THE_WALKTHROUGH: [&str; 3] = ["/healthz", "/readyz", "/opd/board/events"];

struct Request {
    name: String,
    base: String,
    method: String,
    path: String,
    /// The names of its query parameters.
    query: Vec<String>,
}

fn requests(items: &[Value], found: &mut Vec<Request>) {
    for item in items {
        if let Some(children) = item["item"].as_array() {
            requests(children, found);
            continue;
        }
        let name = item["name"].as_str().unwrap_or_default().to_owned();
        let request = &item["request"];
        let raw = request["url"]["raw"].as_str().unwrap_or_default();
        let (base, path) = raw
            .strip_prefix("{{")
            .and_then(|rest| rest.split_once("}}"))
            .unwrap_or_else(|| panic!("{name}: the URL {raw} does not start with a base variable"));
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let query = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split('=').next().unwrap_or_default().to_owned())
            .collect();
        found.push(Request {
            name,
            base: base.to_owned(),
            method: request["method"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase(),
            path: path.to_owned(),
            query,
        });
    }
}

/// The documented `(method, path template)` pairs of a service.
fn operations(service: &'static Service) -> BTreeSet<(String, String)> {
    let document = serde_json::to_value(openapi(service)).unwrap_or_default();
    let mut found = BTreeSet::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for method in item
            .as_object()
            .into_iter()
            .flatten()
            .map(|(method, _)| method)
        {
            found.insert((method.clone(), path.clone()));
        }
    }
    found
}

/// The query parameters an operation documents.
fn query_parameters(service: &'static Service, method: &str, template: &str) -> BTreeSet<String> {
    let document = serde_json::to_value(openapi(service)).unwrap_or_default();
    document["paths"][template][method]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|parameter| parameter["in"] == "query")
        .filter_map(|parameter| parameter["name"].as_str().map(str::to_owned))
        .collect()
}

/// Whether a concrete path (`/opd/patient/view/{{patient_id}}`) fits a template
/// (`/opd/patient/view/{id}`): a template parameter matches any one segment.
fn fits(path: &str, template: &str) -> bool {
    let path: Vec<&str> = path.split('/').collect();
    let template: Vec<&str> = template.split('/').collect();
    path.len() == template.len()
        && path
            .iter()
            .zip(&template)
            .all(|(segment, expected)| expected.starts_with('{') || segment == expected)
}

fn service_of(base: &str) -> &'static Service {
    match base {
        "registration_url" => &registration::SERVICE,
        "inspection_url" => &inspection::SERVICE,
        "treatment_url" => &treatment::SERVICE,
        "release_url" => &release::SERVICE,
        "board_url" => &board::SERVICE,
        other => panic!("the collection uses an unknown base URL variable {other}"),
    }
}

#[test]
fn every_collection_request_is_a_documented_operation_and_back() {
    let collection: Value = serde_json::from_str(COLLECTION).unwrap_or_default();
    let mut all = Vec::new();
    requests(
        collection["item"].as_array().map_or(&[][..], Vec::as_slice),
        &mut all,
    );
    assert!(all.len() > 30, "the collection has {} requests", all.len());

    let services = [
        &registration::SERVICE,
        &inspection::SERVICE,
        &treatment::SERVICE,
        &release::SERVICE,
        &board::SERVICE,
    ];
    let mut exercised = BTreeSet::new();
    for request in &all {
        let service = service_of(&request.base);
        let documented = operations(service)
            .into_iter()
            .find(|(method, template)| *method == request.method && fits(&request.path, template));
        let expected = !DELIBERATELY_UNDOCUMENTED.contains(&request.name.as_str());
        assert_eq!(
            documented.is_some(),
            expected,
            "{}: {} {} on {} {} a documented operation",
            request.name,
            request.method,
            request.path,
            service.name,
            if expected {
                "is not"
            } else {
                "is, unexpectedly,"
            }
        );
        if let Some(operation) = documented {
            let known = query_parameters(service, &operation.0, &operation.1);
            for name in &request.query {
                assert!(
                    known.contains(name),
                    "{}: ?{name} is not a documented parameter of {} {} (it has {known:?})",
                    request.name,
                    operation.0,
                    operation.1
                );
            }
            exercised.insert((service.name, operation));
        }
    }

    for service in services {
        for operation in operations(service) {
            if NOT_IN_THE_WALKTHROUGH.contains(&operation.1.as_str()) {
                continue;
            }
            assert!(
                exercised.contains(&(service.name, operation.clone())),
                "{} documents {} {}, which no collection request steps through",
                service.name,
                operation.0,
                operation.1
            );
        }
    }
}

#[test]
fn the_environment_has_an_empty_token_per_role_and_every_request_sends_its_desks() {
    let environment: Value = serde_json::from_str(ENVIRONMENT).unwrap_or_default();
    let values = environment["values"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for role in opd_shared::auth::Role::ALL {
        let key = format!("{role}_token");
        let value = values.iter().find(|value| value["key"] == key.as_str());
        assert_eq!(
            value.map(|value| value["value"].clone()),
            Some(Value::from("")),
            "{key}: present and empty (a token is never committed)"
        );
    }
    let collection: Value = serde_json::from_str(COLLECTION).unwrap_or_default();
    let mut unauthenticated = Vec::new();
    let mut walk = vec![&collection];
    while let Some(node) = walk.pop() {
        if let Some(items) = node["item"].as_array() {
            walk.extend(items);
        } else if node["request"]["auth"]["type"] != "bearer"
            && !node["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Without a token")
        {
            unauthenticated.push(node["name"].to_string());
        }
    }
    assert!(
        unauthenticated.is_empty(),
        "no bearer token: {unauthenticated:?}"
    );
}

#[test]
fn the_environment_points_each_base_url_at_its_service_port() {
    let environment: Value = serde_json::from_str(ENVIRONMENT).unwrap_or_default();
    let values = environment["values"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let urls: Vec<&Value> = values
        .iter()
        .filter(|value| {
            value["key"]
                .as_str()
                .is_some_and(|key| key.ends_with("_url"))
        })
        .collect();
    assert_eq!(urls.len(), 5);
    for value in urls {
        let key = value["key"].as_str().unwrap_or_default();
        let service = service_of(key);
        assert_eq!(
            value["value"].as_str(),
            Some(format!("http://localhost:{}", service.port).as_str()),
            "{key}"
        );
    }
}

#[test]
fn every_post_documents_the_idempotency_key_header() {
    for service in [
        &registration::SERVICE,
        &inspection::SERVICE,
        &treatment::SERVICE,
        &release::SERVICE,
        &board::SERVICE,
    ] {
        let document = serde_json::to_value(openapi(service)).unwrap_or_default();
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            let Some(post) = item.get("post") else {
                continue;
            };
            let documented = post["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "idempotency-key" && p["in"] == "header");
            assert!(documented, "{} POST {path}", service.name);
        }
    }
}

/// A bound that contradicts the declared format makes a value both valid and invalid to a
/// client (`n = 2332740165` against `u32`'s `int32`): schemathesis found one.
#[test]
fn no_integer_bound_contradicts_its_format() {
    fn check(value: &Value, at: &str) {
        match value {
            Value::Object(map) => {
                if map.get("format").and_then(Value::as_str) == Some("int32") {
                    for bound in ["maximum", "minimum"] {
                        if let Some(limit) = map.get(bound).and_then(Value::as_i64) {
                            assert!(
                                i32::try_from(limit).is_ok(),
                                "{at}: {bound} {limit} does not fit int32"
                            );
                        }
                    }
                }
                for (key, child) in map {
                    check(child, &format!("{at}/{key}"));
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    check(child, &format!("{at}/{i}"));
                }
            }
            _ => {}
        }
    }
    for service in [
        &registration::SERVICE,
        &inspection::SERVICE,
        &treatment::SERVICE,
        &release::SERVICE,
        &board::SERVICE,
    ] {
        check(
            &serde_json::to_value(openapi(service)).unwrap_or_default(),
            service.name,
        );
    }
}
