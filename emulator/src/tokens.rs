//! Validation of the access tokens the emulator issued, shared by every service that takes a
//! bearer token: signature against the published signing keys (by `kid`), issuer, audience,
//! and the validity window on the emulator's clock (with the configured skew, as Microsoft
//! resource APIs allow a few minutes).

use serde_json::{Map, Value};

use crate::entra::mint::{issuer_v1, issuer_v2};
use crate::jose::{self, JwsAlg};
use crate::state::Core;

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token was presented")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is signed with key '{0}', which is not (or no longer) in the JWKS")]
    UnknownKey(String),
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token expired at {0} (NumericDate)")]
    Expired(i64),
    #[error("the token is not valid before {0} (NumericDate)")]
    NotYetValid(i64),
    #[error("the token's issuer '{0}' is not an issuer of this emulator")]
    WrongIssuer(String),
    #[error("the token's audience '{0}' is not accepted here")]
    WrongAudience(String),
}

impl TokenError {
    /// A stable machine-readable name.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed => "malformed",
            TokenError::UnknownKey(_) => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired(_) => "expired",
            TokenError::NotYetValid(_) => "not_yet_valid",
            TokenError::WrongIssuer(_) => "wrong_issuer",
            TokenError::WrongAudience(_) => "wrong_audience",
        }
    }
}

/// A token that passed validation.
#[derive(Debug, Clone)]
pub struct ValidToken {
    pub claims: Map<String, Value>,
}

impl ValidToken {
    pub fn str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    pub fn tenant(&self) -> Option<&str> {
        self.str("tid")
    }

    /// The client: `appid` (v1) or `azp` (v2).
    pub fn client_id(&self) -> Option<&str> {
        self.str("appid").or_else(|| self.str("azp"))
    }

    pub fn roles(&self) -> Vec<&str> {
        self.claims
            .get("roles")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    pub fn scopes(&self) -> Vec<&str> {
        self.str("scp")
            .map(|s| s.split(' ').collect())
            .unwrap_or_default()
    }
}

/// Extracts the token from an `Authorization: Bearer …` header value.
pub fn bearer(authorization: Option<&str>) -> Result<&str, TokenError> {
    let value = authorization.ok_or(TokenError::Missing)?;
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(TokenError::Missing);
    }
    Ok(token.trim())
}

/// Validates `token`. `audiences` lists accepted `aud` values (App ID URIs or app ids,
/// trailing slashes ignored); empty accepts any audience.
pub fn validate(core: &Core, token: &str, audiences: &[&str]) -> Result<ValidToken, TokenError> {
    let jws = jose::parse_compact(token).map_err(|_| TokenError::Malformed)?;
    if jws.header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(TokenError::Malformed);
    }
    let kid = jws
        .header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(TokenError::Malformed)?;
    let now = core.clock.now();
    let key = core
        .signing
        .find(kid, now)
        .ok_or_else(|| TokenError::UnknownKey(kid.to_string()))?;
    if !jose::verify_rsa(
        JwsAlg::RS256,
        &key.cert.rsa_public_key,
        jws.signing_input.as_bytes(),
        &jws.signature,
    ) {
        return Err(TokenError::BadSignature);
    }
    let claims = jws.claims;
    let num = |k: &str| claims.get(k).and_then(jose::numeric_date);
    let skew = core.settings.clock_skew.as_seconds_f64();
    let now_s = now.unix_timestamp() as f64;
    let exp = num("exp").ok_or(TokenError::Malformed)?;
    if now_s > exp + skew {
        return Err(TokenError::Expired(exp as i64));
    }
    if let Some(nbf) = num("nbf") {
        if now_s + skew < nbf {
            return Err(TokenError::NotYetValid(nbf as i64));
        }
    }
    let tid = claims
        .get("tid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if iss != issuer_v1(tid) && iss != issuer_v2(&core.settings.issuer_host, tid) {
        return Err(TokenError::WrongIssuer(iss.to_string()));
    }
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let norm = |s: &str| s.trim_end_matches('/').to_ascii_lowercase();
    if !audiences.is_empty() && !audiences.iter().any(|a| norm(a) == norm(aud)) {
        return Err(TokenError::WrongAudience(aud.to_string()));
    }
    Ok(ValidToken { claims })
}
