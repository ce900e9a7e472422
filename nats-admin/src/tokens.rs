//! The development token issuer: an Ed25519 key that signs bearer tokens for the OPD's roles,
//! and the JWKS document with its public half that the services verify them with. For the dev
//! stack, compose and the tests; a hospital's identity provider replaces it (docs/security.md).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use opd_shared::auth::Role;
use serde::Serialize;

/// The `iss` of development tokens (the services' default `auth.issuer`).
pub const ISSUER: &str = "opd-dev";
/// The `aud` of development tokens (the services' default `auth.audience`).
pub const AUDIENCE: &str = "opd";
/// How long a token is valid unless asked otherwise: a working day.
pub const DEFAULT_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// A signing key and its key id.
pub struct Issuer {
    key: EncodingKey,
    jwk: Jwk,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
    roles: Vec<&'static str>,
}

impl Issuer {
    /// A new key, as PKCS#8 PEM (what [`Issuer::from_pem`] reads).
    pub fn generate_pem() -> anyhow::Result<String> {
        Ok(rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?.serialize_pem())
    }

    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let key = EncodingKey::from_ed_pem(pem.as_bytes()).context("not an Ed25519 key")?;
        let public = rcgen::KeyPair::from_pem(pem).context("not an Ed25519 key")?;
        let mut jwk = Jwk::from_decoding_key(
            &jsonwebtoken::DecodingKey::from_ed_der(public.public_key_raw()),
            Some(Algorithm::EdDSA),
        )?;
        // The key id names the key by its public half, so a new key gets a new id.
        let x = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(params) => params.x.clone(),
            _ => anyhow::bail!("not an Ed25519 key"),
        };
        jwk.common.key_id = Some(format!("opd-dev-{}", &x[..x.len().min(12)]));
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        Ok(Self { key, jwk })
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token issuer's key {}", path.display()))?;
        Self::from_pem(&pem).with_context(|| path.display().to_string())
    }

    /// The JWKS document the services read (`auth.jwks_file`).
    pub fn jwks(&self) -> anyhow::Result<String> {
        let set = JwkSet {
            keys: vec![self.jwk.clone()],
        };
        Ok(serde_json::to_string_pretty(&set)? + "\n")
    }

    /// A token for `subject` with `roles`, valid for `ttl`.
    pub fn token(&self, subject: &str, roles: &[Role], ttl: Duration) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = Claims {
            iss: ISSUER,
            aud: AUDIENCE,
            sub: subject,
            iat: now,
            exp: now + ttl.as_secs(),
            roles: roles.iter().map(|role| role.as_str()).collect(),
        };
        self.sign(&claims)
    }

    /// Any claims, signed with this key (tests craft unusual tokens with it).
    pub fn sign(&self, claims: &impl Serialize) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = self.jwk.common.key_id.clone();
        Ok(jsonwebtoken::encode(&header, claims, &self.key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opd_shared::auth::keys::Keys;
    use opd_shared::infra::config::{ServiceDefaults, Settings};

    fn settings() -> opd_shared::infra::config::AuthSettings {
        Settings::defaults(ServiceDefaults {
            name: "registration",
            port: 0,
        })
        .auth
    }

    #[test]
    fn the_services_accept_what_the_issuer_signs_and_nothing_else() -> anyhow::Result<()> {
        let issuer = Issuer::from_pem(&Issuer::generate_pem()?)?;
        let keys = Keys::from_jwks(&issuer.jwks()?, &settings())?;
        let token = issuer.token("nurse-1", &[Role::Clinician], DEFAULT_TTL)?;
        let caller = keys.verify(&token).map_err(|e| anyhow::anyhow!(e))?;
        assert_eq!(caller.subject, "nurse-1");
        assert_eq!(caller.roles, vec![Role::Clinician]);

        // Another key, an expired token, a changed payload: refused.
        let stranger = Issuer::from_pem(&Issuer::generate_pem()?)?;
        let forged = stranger.token("nurse-1", &[Role::Operator], DEFAULT_TTL)?;
        assert!(keys.verify(&forged).is_err());
        let stale = issuer.token("nurse-1", &[Role::Clinician], Duration::ZERO)?;
        let mut late = settings();
        late.leeway = Duration::ZERO;
        let strict = Keys::from_jwks(&issuer.jwks()?, &late)?;
        std::thread::sleep(Duration::from_millis(1100));
        assert!(
            strict.verify(&stale).is_err(),
            "an expired token was accepted"
        );
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
        assert!(keys.verify(&tampered).is_err());
        // Not valid yet, for another audience or issuer, or without a subject: refused.
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = |changes: serde_json::Value| {
            let mut claims = serde_json::json!({
                "iss": ISSUER, "aud": AUDIENCE, "sub": "nurse-1", "exp": now + 600,
                "roles": ["clinician"]
            });
            if let (Some(claims), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
                for (key, value) in changes {
                    claims.insert(key.clone(), value.clone());
                }
            }
            claims
        };
        assert!(
            keys.verify(&issuer.sign(&claims(serde_json::json!({})))?)
                .is_ok()
        );
        for (why, changes) in [
            (
                "not valid for an hour",
                serde_json::json!({"nbf": now + 3600}),
            ),
            ("another audience", serde_json::json!({"aud": "billing"})),
            ("another issuer", serde_json::json!({"iss": "elsewhere"})),
            ("no subject", serde_json::json!({"sub": null})),
        ] {
            let token = issuer.sign(&claims(changes))?;
            assert!(
                keys.verify(&token).is_err(),
                "a token with {why} was accepted"
            );
        }
        // An unsigned token ("alg": "none") is never taken.
        let unsigned = format!("eyJhbGciOiJub25lIn0.{}.", parts[1]);
        assert!(keys.verify(&unsigned).is_err());
        Ok(())
    }

    #[test]
    fn a_token_has_its_signature_checked_once_while_it_is_valid() -> anyhow::Result<()> {
        let issuer = Issuer::from_pem(&Issuer::generate_pem()?)?;
        let keys = Keys::from_jwks(&issuer.jwks()?, &settings())?;
        let nurse = issuer.token("nurse-1", &[Role::Clinician], DEFAULT_TTL)?;
        for _ in 0..100 {
            let caller = keys.verify(&nurse).map_err(|e| anyhow::anyhow!(e))?;
            assert_eq!(caller.subject, "nurse-1");
            assert_eq!(caller.roles, vec![Role::Clinician]);
        }
        assert_eq!(keys.signatures_checked(), 1);
        let clerk = issuer.token("clerk-1", &[Role::Registrar], DEFAULT_TTL)?;
        let caller = keys.verify(&clerk).map_err(|e| anyhow::anyhow!(e))?;
        assert_eq!(
            caller.roles,
            vec![Role::Registrar],
            "another token's caller"
        );
        assert_eq!(keys.signatures_checked(), 2);
        assert_eq!(keys.tokens_held(), 2);

        // A held token changed by one character, or forged with another key, is checked (and
        // refused) every time it is sent, and never held.
        let parts: Vec<&str> = nurse.split('.').collect();
        let tampered = format!("{}.{}.{}A", parts[0], parts[1], parts[2]);
        let stranger = Issuer::from_pem(&Issuer::generate_pem()?)?;
        let forged = stranger.token("nurse-1", &[Role::Operator], DEFAULT_TTL)?;
        for _ in 0..3 {
            assert!(
                keys.verify(&tampered).is_err(),
                "a tampered token was taken"
            );
            assert!(keys.verify(&forged).is_err(), "a forged token was taken");
        }
        assert_eq!(keys.signatures_checked(), 2 + 6);
        assert_eq!(keys.tokens_held(), 2);
        Ok(())
    }

    #[test]
    fn a_held_token_is_refused_once_it_expires() -> anyhow::Result<()> {
        let issuer = Issuer::from_pem(&Issuer::generate_pem()?)?;
        let mut strict = settings();
        strict.leeway = Duration::ZERO;
        let keys = Keys::from_jwks(&issuer.jwks()?, &strict)?;
        let token = issuer.token("nurse-1", &[Role::Clinician], Duration::from_secs(2))?;
        assert!(keys.verify(&token).is_ok());
        assert!(keys.verify(&token).is_ok());
        assert_eq!(
            keys.signatures_checked(),
            1,
            "the second answer came from memory"
        );
        std::thread::sleep(Duration::from_millis(3100));
        assert!(
            keys.verify(&token).is_err(),
            "an expired token was accepted from memory"
        );
        assert_eq!(keys.tokens_held(), 0, "the expired token is still held");
        Ok(())
    }

    #[test]
    fn the_tokens_held_are_bounded() -> anyhow::Result<()> {
        use opd_shared::auth::keys::TOKENS_HELD_AT_MOST;

        let issuer = Issuer::from_pem(&Issuer::generate_pem()?)?;
        let keys = Keys::from_jwks(&issuer.jwks()?, &settings())?;
        for n in 0..TOKENS_HELD_AT_MOST + 100 {
            let token = issuer.token(&format!("clerk-{n}"), &[Role::Registrar], DEFAULT_TTL)?;
            let caller = keys.verify(&token).map_err(|e| anyhow::anyhow!(e))?;
            assert_eq!(caller.subject, format!("clerk-{n}"));
            assert!(
                keys.tokens_held() <= TOKENS_HELD_AT_MOST,
                "{} tokens held",
                keys.tokens_held()
            );
        }
        assert!(keys.tokens_held() > 0);
        Ok(())
    }
}
