//! Who may call what: every route of the OpenAPI document, with no token, a forged one, the
//! wrong roles and the right ones.

use treatment::SERVICE;

#[tokio::test]
async fn every_route_answers_401_without_a_valid_token_and_403_without_its_role() {
    opd_testing::auth::check_every_route(&SERVICE).await;
}
