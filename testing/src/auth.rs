//! Bearer tokens for the services under test: one development issuer per test process, whose
//! JWKS document every [`crate::TestApp`] and [`crate::oneshot`] service trusts.

use std::path::PathBuf;
use std::sync::LazyLock;

use opd_nats_admin::tokens::{DEFAULT_TTL, Issuer};
use opd_shared::auth::Role;
use opd_shared::infra::config::Settings;

struct TestIssuer {
    issuer: Issuer,
    jwks_file: PathBuf,
}

static ISSUER: LazyLock<TestIssuer> = LazyLock::new(|| {
    let issuer = Issuer::from_pem(&Issuer::generate_pem().expect("an Ed25519 key"))
        .expect("the key just generated");
    let jwks_file = std::env::temp_dir().join(format!(
        "opd-test-jwks-{}-{}.json",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&jwks_file, issuer.jwks().expect("a JWKS document")).expect("a JWKS file");
    TestIssuer { issuer, jwks_file }
});

/// A token for `subject` holding `roles`.
pub fn token_for(subject: &str, roles: &[Role]) -> String {
    ISSUER
        .issuer
        .token(subject, roles, DEFAULT_TTL)
        .expect("a signed token")
}

/// A token holding `roles`, for a subject named after them.
pub fn token(roles: &[Role]) -> String {
    let name = roles
        .iter()
        .map(|role| role.as_str())
        .collect::<Vec<_>>()
        .join("+");
    token_for(&format!("test-{name}"), roles)
}

/// A token with every role: what a test's client sends unless the test is about access.
pub fn all_roles() -> String {
    token_for("test-all-roles", &Role::ALL)
}

/// Makes `settings` trust the test issuer.
pub fn trust_test_issuer(settings: &mut Settings) {
    settings.auth.enabled = true;
    settings.auth.jwks_file = Some(ISSUER.jwks_file.clone());
}

/// A client that sends `token` with every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .expect("a token is a valid header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("a client")
}

/// Every operation of `service`'s OpenAPI document, answered in-process: one that declares
/// roles answers 401 (with a `WWW-Authenticate` challenge) without a token and with a forged
/// one, 403 to a token with every other role, and neither to a token with any of its roles;
/// an open one answers without a token. The routes come from the document, the same table the
/// service checks with, so a new route is covered the day it is added.
pub async fn check_every_route(service: &'static opd_shared::service::Service) {
    use opd_shared::auth::access::{Need, table};

    let document = opd_shared::app::openapi(service);
    let stranger = Issuer::from_pem(&Issuer::generate_pem().expect("a key")).expect("a key");
    let forged = stranger
        .token("intruder", &Role::ALL, DEFAULT_TTL)
        .expect("a token");
    let mut checked = 0;
    for ((method, template), need) in table(&document) {
        let path = concrete(&template);
        let method = method.as_str();
        let answer = |token: Option<String>| {
            let path = path.clone();
            async move { crate::oneshot_as(service, token.as_deref(), method, &path, "{}").await }
        };
        match need {
            Need::Open => {
                let status = answer(None).await.status.as_u16();
                assert!(
                    status != 401 && status != 403,
                    "{method} {template} is open but answered {status} without a token"
                );
            }
            Need::AnyOf(roles) => {
                assert!(
                    !roles.is_empty(),
                    "{method} {template} declares no roles: add security((\"bearer\" = [ROLE]))"
                );
                for token in [None, Some("not-a-jwt".to_owned()), Some(forged.clone())] {
                    let sent = token.is_some();
                    let refused = answer(token).await;
                    let problem = refused.problem(401);
                    assert_eq!(
                        problem["type"], "/problems/unauthorized",
                        "{method} {template}"
                    );
                    let challenge = refused.www_authenticate.as_deref().unwrap_or_default();
                    assert!(
                        challenge.starts_with("Bearer realm=\"opd\"")
                            && challenge.contains("invalid_token") == sent,
                        "{method} {template}: challenge {challenge:?}"
                    );
                }
                let others: Vec<Role> = Role::ALL
                    .into_iter()
                    .filter(|role| !roles.contains(role))
                    .collect();
                if !others.is_empty() {
                    let problem = answer(Some(token(&others))).await.problem(403);
                    assert_eq!(
                        problem["type"], "/problems/forbidden",
                        "{method} {template}"
                    );
                }
                for role in roles {
                    let status = answer(Some(token(&[role]))).await.status.as_u16();
                    assert!(
                        status != 401 && status != 403,
                        "{method} {template} refused the role {role} with {status}"
                    );
                }
            }
        }
        checked += 1;
    }
    assert!(checked > 3, "only {checked} operations in the document");
}

/// A path template with every parameter filled in with a valid value.
fn concrete(template: &str) -> String {
    let mut path = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        path.push_str(&rest[..start]);
        path.push('1');
        rest = rest[start..].split_once('}').map_or("", |(_, after)| after);
    }
    path.push_str(rest);
    path
}
