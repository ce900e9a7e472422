//! The issuer's public keys (a JWKS document) and the verification of a bearer token with them.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::auth::verified::Verified;
use crate::auth::{Caller, Role};
use crate::infra::config::AuthSettings;

/// The keys that may sign tokens, each with the one algorithm it is used with (a token naming
/// another is refused, so that an RSA public key can never be taken as an HMAC secret).
pub struct Keys {
    by_id: HashMap<String, (DecodingKey, Algorithm)>,
    /// A token without `kid` is checked with the only key, when there is only one.
    only: Option<(DecodingKey, Algorithm)>,
    issuer: String,
    audience: String,
    roles_claim: Vec<String>,
    leeway_seconds: u64,
    /// The callers of tokens already verified, until they expire.
    verified: Verified,
    /// How many tokens had their signature checked (those not taken from `verified`).
    signatures_checked: AtomicU64,
}

/// The most verified tokens [`Keys`] holds at once.
pub const TOKENS_HELD_AT_MOST: usize = crate::auth::verified::CAPACITY;

/// Why a token was refused; the text is for the caller's 401 and the service's log.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// Checked by `jsonwebtoken` (a whole number of seconds, required); kept for the cache.
    exp: u64,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl Keys {
    /// Reads the JWKS document `auth.jwks_file` names.
    pub fn load(settings: &AuthSettings) -> anyhow::Result<Self> {
        let path = settings.jwks_file.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "auth.jwks_file is not set: name the JWKS document of the token issuer \
                 (OPD_AUTH__JWKS_FILE), or switch authentication off with \
                 OPD_AUTH__ENABLED=false for the book's curl commands"
            )
        })?;
        let text = std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
        Self::from_jwks(&text, settings)
            .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
    }

    /// The keys of a JWKS document (`{"keys": [...]}`).
    pub fn from_jwks(text: &str, settings: &AuthSettings) -> anyhow::Result<Self> {
        let set: JwkSet = serde_json::from_str(text)?;
        let mut by_id = HashMap::new();
        let mut all = Vec::new();
        for jwk in &set.keys {
            let algorithm = algorithm_of(jwk)?;
            let key = DecodingKey::from_jwk(jwk)?;
            if let Some(id) = &jwk.common.key_id {
                by_id.insert(id.clone(), (key.clone(), algorithm));
            }
            all.push((key, algorithm));
        }
        if all.is_empty() {
            anyhow::bail!("the JWKS document holds no key");
        }
        let only = if all.len() == 1 { all.pop() } else { None };
        Ok(Self {
            by_id,
            only,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            roles_claim: settings.roles_claim.split('.').map(str::to_owned).collect(),
            leeway_seconds: settings.leeway.as_secs(),
            verified: Verified::new(),
            signatures_checked: AtomicU64::new(0),
        })
    }

    /// The caller a bearer token names, if it is signed by one of the keys, for this issuer and
    /// audience, and current. Roles the platform does not know are left out.
    ///
    /// A token verified before is answered from memory until it expires: its signature is
    /// checked once, not on every request (see [`Keys::signatures_checked`]).
    ///
    /// ```
    /// # use opd_shared::auth::keys::Keys;
    /// # use opd_shared::infra::config::{ServiceDefaults, Settings};
    /// # let settings = Settings::defaults(ServiceDefaults { name: "registration", port: 0 }).auth;
    /// // The public half of a development key (RFC 8037's example key).
    /// let jwks = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519",
    ///     "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
    /// let keys = Keys::from_jwks(jwks, &settings)?;
    /// assert!(keys.verify("not-a-jwt").is_err());
    /// assert_eq!(keys.signatures_checked(), 0); // refused before any signature was checked
    /// # anyhow::Ok(())
    /// ```
    pub fn verify(&self, token: &str) -> Result<Caller, Refused> {
        if let Some(caller) = self.verified.get(token) {
            return Ok(caller);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| Refused(format!("the token is not a JWT: {error}")))?;
        let (key, algorithm) = match &header.kid {
            Some(id) => self.by_id.get(id).or(self.only.as_ref()),
            None => self.only.as_ref(),
        }
        .ok_or_else(|| Refused("the token is signed by a key this service does not know".into()))?;
        let mut validation = Validation::new(*algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.leeway_seconds;
        // A token that is not valid yet (issued for later, or by a clock far ahead) is refused.
        validation.validate_nbf = true;
        self.signatures_checked.fetch_add(1, Ordering::Relaxed);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|error| Refused(format!("the token is not valid here: {error}")))?
            .claims;
        let mut roles: Vec<Role> = self
            .roles_in(&claims.rest)
            .iter()
            .filter_map(|value| value.as_str()?.parse().ok())
            .collect();
        roles.sort();
        roles.dedup();
        let caller = Caller {
            subject: claims.sub,
            roles,
        };
        // `jsonwebtoken` accepts the token until `exp` + leeway; the cache refuses it from then.
        let refused_from = claims.exp.saturating_add(self.leeway_seconds);
        self.verified.insert(token, &caller, refused_from);
        Ok(caller)
    }

    /// How many tokens have had their signature checked since start-up: one per distinct token
    /// while it is valid, however often it is sent.
    pub fn signatures_checked(&self) -> u64 {
        self.signatures_checked.load(Ordering::Relaxed)
    }

    /// How many verified tokens are held (at most [`TOKENS_HELD_AT_MOST`]).
    pub fn tokens_held(&self) -> usize {
        self.verified.len()
    }

    /// The array at `auth.roles_claim`, a dotted path (`roles`, or Keycloak's
    /// `realm_access.roles`); nothing when absent.
    fn roles_in<'a>(
        &self,
        claims: &'a serde_json::Map<String, serde_json::Value>,
    ) -> &'a [serde_json::Value] {
        let Some((first, rest)) = self.roles_claim.split_first() else {
            return &[];
        };
        let mut value = claims.get(first);
        for part in rest {
            value = value.and_then(|inner| inner.get(part));
        }
        value
            .and_then(serde_json::Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
}

/// The algorithm a key is used with: its `alg`, or the usual one for its type.
fn algorithm_of(jwk: &Jwk) -> anyhow::Result<Algorithm> {
    if let Some(algorithm) = jwk.common.key_algorithm {
        return Algorithm::try_from(algorithm)
            .map_err(|error| anyhow::anyhow!("key algorithm {algorithm}: {error}"));
    }
    Ok(match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => anyhow::bail!("a key on curve {:?} without `alg`", params.curve),
        },
        _ => anyhow::bail!("only key pairs (kty OKP, RSA or EC) can verify tokens here"),
    })
}
