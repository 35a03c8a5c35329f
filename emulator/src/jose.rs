//! Compact JWS (RFC 7515) on top of aws-lc-rs: the emulator's one RSA implementation.
//!
//! Why not a JWT crate for this: the hot paths need a parsed key that is reused for every
//! signature (re-parsing costs half the throughput), and client assertions need rules JWT
//! crates do not offer — fractional NumericDates (MSAL Python), padded `x5t` values, both
//! `x5t` and `x5t#S256`, and Entra's exact error for every failure.

use aws_lc_rs::{digest, rand::SystemRandom, signature};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value};

/// The RSA algorithms Entra accepts for client assertions and uses for tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum JwsAlg {
    RS256,
    PS256,
}

impl JwsAlg {
    pub fn parse(name: &str) -> Option<JwsAlg> {
        match name {
            "RS256" => Some(JwsAlg::RS256),
            "PS256" => Some(JwsAlg::PS256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            JwsAlg::RS256 => "RS256",
            JwsAlg::PS256 => "PS256",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    #[error("the key is not a usable RSA private key")]
    BadKey,
    #[error("signing failed")]
    Sign,
    #[error("JSON serialisation failed: {0}")]
    Json(#[from] serde_json::Error),
}

/// base64url without padding, as JWS segments and `x5t` use.
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Standard base64 with padding, as `x5c` uses.
pub fn b64std(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decodes base64url with or without `=` padding (MSAL Python pads its `x5t`).
pub fn b64url_decode_lenient(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

pub fn sha1(data: &[u8]) -> [u8; 20] {
    let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data);
    let mut out = [0u8; 20];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// An RSA private key parsed once and reused for every signature.
pub struct RsaSigningKey {
    key_pair: signature::RsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for RsaSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaSigningKey(..)")
    }
}

impl RsaSigningKey {
    pub fn from_pkcs8_der(der: &[u8]) -> Result<RsaSigningKey, JoseError> {
        let key_pair = signature::RsaKeyPair::from_pkcs8(der).map_err(|_| JoseError::BadKey)?;
        Ok(RsaSigningKey {
            key_pair,
            rng: SystemRandom::new(),
        })
    }

    pub fn sign(&self, alg: JwsAlg, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        let encoding: &'static dyn signature::RsaEncoding = match alg {
            JwsAlg::RS256 => &signature::RSA_PKCS1_SHA256,
            JwsAlg::PS256 => &signature::RSA_PSS_SHA256,
        };
        let mut sig = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(encoding, &self.rng, message, &mut sig)
            .map_err(|_| JoseError::Sign)?;
        Ok(sig)
    }

    /// Signs `header` and `claims` (any serialisable values) into a compact JWS.
    pub fn sign_jwt<H: Serialize, C: Serialize>(
        &self,
        alg: JwsAlg,
        header: &H,
        claims: &C,
    ) -> Result<String, JoseError> {
        let mut out = b64url(&serde_json::to_vec(header)?);
        out.push('.');
        out.push_str(&b64url(&serde_json::to_vec(claims)?));
        let sig = self.sign(alg, out.as_bytes())?;
        out.push('.');
        out.push_str(&b64url(&sig));
        Ok(out)
    }
}

/// Verifies an RSA signature with a PKCS#1 `RSAPublicKey` (the bits of an X.509 SPKI).
pub fn verify_rsa(alg: JwsAlg, pkcs1_public_key: &[u8], message: &[u8], sig: &[u8]) -> bool {
    let params: &'static dyn signature::VerificationAlgorithm = match alg {
        JwsAlg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        JwsAlg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
    };
    signature::UnparsedPublicKey::new(params, pkcs1_public_key)
        .verify(message, sig)
        .is_ok()
}

/// A compact JWS split and decoded, not yet verified.
#[derive(Debug, Clone)]
pub struct ParsedJws {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// `base64url(header) "." base64url(payload)`: the bytes the signature covers.
    pub signing_input: String,
    pub signature: Vec<u8>,
}

/// Why a compact JWS could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedJws {
    NotThreeSegments,
    BadBase64,
    HeaderNotJsonObject,
    PayloadNotJsonObject,
}

pub fn parse_compact(token: &str) -> Result<ParsedJws, MalformedJws> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MalformedJws::NotThreeSegments);
    };
    let decode = |seg: &str| {
        URL_SAFE_NO_PAD
            .decode(seg)
            .map_err(|_| MalformedJws::BadBase64)
    };
    let header = match serde_json::from_slice::<Value>(&decode(h)?) {
        Ok(Value::Object(m)) => m,
        _ => return Err(MalformedJws::HeaderNotJsonObject),
    };
    let claims = match serde_json::from_slice::<Value>(&decode(p)?) {
        Ok(Value::Object(m)) => m,
        _ => return Err(MalformedJws::PayloadNotJsonObject),
    };
    let signature = decode(s)?;
    Ok(ParsedJws {
        header,
        claims,
        signing_input: token[..h.len() + 1 + p.len()].to_string(),
        signature,
    })
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JWT NumericDate: integer or fractional seconds (MSAL Python sends floats).
pub fn numeric_date(v: &Value) -> Option<f64> {
    let n = v.as_f64()?;
    n.is_finite().then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_base64url_accepts_padding() {
        assert_eq!(b64url_decode_lenient("YQ=="), Some(b"a".to_vec()));
        assert_eq!(b64url_decode_lenient("YQ"), Some(b"a".to_vec()));
        assert_eq!(b64url_decode_lenient("Y!"), None);
    }

    #[test]
    fn compact_parse_rejects_wrong_segment_counts() {
        assert_eq!(
            parse_compact("a.b").unwrap_err(),
            MalformedJws::NotThreeSegments
        );
        assert_eq!(
            parse_compact("a.b.c.d").unwrap_err(),
            MalformedJws::NotThreeSegments
        );
        assert_eq!(
            parse_compact("e30.e30.").map(|j| j.signature.len()).ok(),
            Some(0)
        );
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn numeric_dates_accept_fractions() {
        assert_eq!(
            numeric_date(&serde_json::json!(1795304759.1266282)),
            Some(1795304759.1266282)
        );
        assert_eq!(numeric_date(&serde_json::json!("1")), None);
    }
}
