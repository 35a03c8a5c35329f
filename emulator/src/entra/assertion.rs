//! Client-assertion (private_key_jwt) validation, reference §2.2. The order of checks decides
//! which AADSTS code a client sees: malformed (50027) → issuer/subject (700021, 50048) →
//! key lookup and signature (700027) → audience (700023) → validity window (700024).

use serde_json::{json, Map, Value};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::errors::{format_precise, AadError};
use crate::jose::{self, JwsAlg, MalformedJws, ParsedJws};
use crate::pki::CertInfo;
use crate::state::RegisteredCertificate;

/// The `client_assertion_type` value for JWT assertions.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What the validator needs besides the assertion.
pub struct AssertionContext<'a> {
    pub client_id: &'a Uuid,
    pub certificates: &'a [RegisteredCertificate],
    /// Token-endpoint URLs accepted as `aud`.
    pub audiences: &'a [String],
    pub now: OffsetDateTime,
    pub skew: Duration,
    /// Signatures already verified (clients reuse one assertion for minutes); `None` checks
    /// every signature.
    pub verified: Option<&'a VerifiedSignatures>,
}

/// Assertion signatures that verified. MSAL and azure-identity reuse one signed assertion for
/// several minutes, and an RSA verification is a pure function of (algorithm, public key,
/// signed bytes, signature), so a repeat is answered by a SHA-256 of those four instead of
/// another RSA operation; every other check (certificate still registered and valid,
/// audience, times) still runs on every request. Only successes are kept, at most
/// [`VerifiedSignatures::CAPACITY`] (then it starts over).
#[derive(Debug, Default)]
pub struct VerifiedSignatures {
    seen: std::sync::Mutex<std::collections::HashSet<[u8; 32]>>,
}

impl VerifiedSignatures {
    pub const CAPACITY: usize = 1024;

    pub fn verify(&self, alg: JwsAlg, public_key: &[u8], message: &[u8], sig: &[u8]) -> bool {
        let mut material = Vec::with_capacity(32 + public_key.len() + message.len() + sig.len());
        for part in [alg.name().as_bytes(), public_key, message] {
            material.extend_from_slice(&(part.len() as u64).to_be_bytes());
            material.extend_from_slice(part);
        }
        material.extend_from_slice(sig);
        let id = jose::sha256(&material);
        let seen = |s: &std::collections::HashSet<[u8; 32]>| s.contains(&id);
        if self.seen.lock().map(|s| seen(&s)).unwrap_or(false) {
            return true;
        }
        let ok = jose::verify_rsa(alg, public_key, message, sig);
        if ok {
            if let Ok(mut s) = self.seen.lock() {
                if s.len() >= Self::CAPACITY {
                    s.clear();
                }
                s.insert(id);
            }
        }
        ok
    }
}

/// A valid assertion: which registered certificate signed it.
#[derive(Debug, Clone)]
pub struct ValidAssertion {
    pub key_id: Uuid,
    pub alg: JwsAlg,
}

/// The decoded header and claims of an assertion (never the signature), for the journal.
pub fn describe(jws: &ParsedJws) -> Option<Box<serde_json::value::RawValue>> {
    serde_json::value::to_raw_value(&json!({"header": jws.header, "claims": jws.claims})).ok()
}

fn malformed() -> AadError {
    AadError::new(50027, &[])
}

fn str_claim<'m>(m: &'m Map<String, Value>, k: &str) -> Option<&'m str> {
    m.get(k).and_then(Value::as_str)
}

/// Which thumbprint the client named, and how.
enum Thumbprint {
    Sha1(Vec<u8>),
    Sha256(Vec<u8>),
}

impl Thumbprint {
    fn matches(&self, cert: &CertInfo) -> bool {
        match self {
            Thumbprint::Sha1(t) => t.as_slice() == cert.sha1,
            Thumbprint::Sha256(t) => t.as_slice() == cert.sha256,
        }
    }

    fn hex(&self) -> String {
        match self {
            Thumbprint::Sha1(t) | Thumbprint::Sha256(t) => hex::encode_upper(t),
        }
    }
}

pub fn validate(assertion: &str, ctx: &AssertionContext<'_>) -> Result<ValidAssertion, AadError> {
    validate_parsed(jose::parse_compact(assertion), ctx)
}

/// [`validate`] of an assertion the caller already split and decoded (the token endpoint
/// decodes it once, for the journal and for the checks).
pub fn validate_parsed(
    parsed: Result<ParsedJws, MalformedJws>,
    ctx: &AssertionContext<'_>,
) -> Result<ValidAssertion, AadError> {
    let jws = parsed.map_err(|e| match e {
        MalformedJws::NotThreeSegments
        | MalformedJws::BadBase64
        | MalformedJws::HeaderNotJsonObject
        | MalformedJws::PayloadNotJsonObject => malformed(),
    })?;
    let alg = str_claim(&jws.header, "alg")
        .and_then(JwsAlg::parse)
        .ok_or_else(malformed)?;

    // The leaf of an optional x5c chain.
    let x5c_leaf = match jws.header.get("x5c") {
        None => None,
        Some(Value::Array(chain)) => {
            let first = chain
                .first()
                .and_then(Value::as_str)
                .ok_or_else(malformed)?;
            // MSAL Python wraps the base64 at 64 characters with '\n'; Entra accepts that.
            let compact: String = first.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            use base64::Engine;
            let der = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|_| malformed())?;
            Some(CertInfo::from_der(&der, "x5c").map_err(|_| malformed())?)
        }
        Some(_) => return Err(malformed()),
    };
    let decode_thumb = |name: &str, len: usize| -> Result<Option<Vec<u8>>, AadError> {
        match jws.header.get(name) {
            None => Ok(None),
            Some(v) => {
                let bytes = v
                    .as_str()
                    .and_then(jose::b64url_decode_lenient)
                    .ok_or_else(malformed)?;
                if bytes.len() == len {
                    Ok(Some(bytes))
                } else {
                    Err(malformed())
                }
            }
        }
    };
    let thumbprint = match (
        decode_thumb("x5t#S256", 32)?,
        decode_thumb("x5t", 20)?,
        &x5c_leaf,
    ) {
        (Some(s256), _, _) => Thumbprint::Sha256(s256),
        (None, Some(s1), _) => Thumbprint::Sha1(s1),
        (None, None, Some(leaf)) => Thumbprint::Sha1(leaf.sha1.to_vec()),
        (None, None, None) => {
            return Err(AadError::with_message(
                50027,
                "Invalid JWT token. No certificate thumbprint specified in token header.",
            ));
        }
    };

    let client = ctx.client_id.to_string();
    let iss = str_claim(&jws.claims, "iss");
    if !iss.is_some_and(|i| i.eq_ignore_ascii_case(&client)) {
        return Err(AadError::new(700021, &[]));
    }
    if str_claim(&jws.claims, "sub") != iss {
        return Err(AadError::new(50048, &[]));
    }

    let key_not_found = || {
        AadError::new(
            700027,
            &[
                "The certificate with identifier used to sign the client assertion is not registered on application.",
                "The key was not found.",
                &thumbprint.hex(),
                "",
                &client,
            ],
        )
    };
    // With x5c, the chain's leaf must be the certificate the header names.
    if let Some(leaf) = &x5c_leaf {
        if !thumbprint.matches(leaf) {
            return Err(key_not_found());
        }
    }
    let registered = ctx
        .certificates
        .iter()
        .find(|c| thumbprint.matches(&c.info))
        .ok_or_else(key_not_found)?;
    // A registered certificate signs only within its validity window (secrets have 7000222).
    let (from, until) = (registered.info.not_before, registered.info.not_after);
    if ctx.now < from || ctx.now > until {
        return Err(AadError::new(
            1000502,
            &[
                &thumbprint.hex(),
                &format_precise(from),
                &format_precise(until),
            ],
        ));
    }
    let (public_key, input) = (
        &registered.info.rsa_public_key,
        jws.signing_input.as_bytes(),
    );
    let verified = match ctx.verified {
        Some(cache) => cache.verify(alg, public_key, input, &jws.signature),
        None => jose::verify_rsa(alg, public_key, input, &jws.signature),
    };
    if !verified {
        let found = format!(
            ", Found key 'Start={}, End={}'",
            portal_date(registered.info.not_before),
            portal_date(registered.info.not_after)
        );
        return Err(AadError::new(
            700027,
            &[
                "Client assertion contains an invalid signature.",
                "The provided signature value did not match the expected signature value.",
                &thumbprint.hex(),
                &found,
                &client,
            ],
        ));
    }

    let aud_ok = match jws.claims.get("aud") {
        Some(Value::String(a)) => ctx.audiences.iter().any(|x| x.eq_ignore_ascii_case(a)),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| ctx.audiences.iter().any(|x| x.eq_ignore_ascii_case(a))),
        _ => false,
    };
    if !aud_ok {
        return Err(AadError::new(700023, &[]));
    }

    let exp = jws
        .claims
        .get("exp")
        .and_then(jose::numeric_date)
        .ok_or_else(malformed)?;
    let nbf = match jws.claims.get("nbf") {
        None => 0.0,
        Some(v) => jose::numeric_date(v).ok_or_else(malformed)?,
    };
    let now = ctx.now;
    let skew = ctx.skew.as_seconds_f64();
    let now_s = now.unix_timestamp() as f64 + f64::from(now.nanosecond()) / 1e9;
    if now_s > exp + skew || now_s + skew < nbf {
        return Err(AadError::new(
            700024,
            &[
                &format_precise(now),
                &format_precise(from_numeric(nbf)),
                &format_precise(from_numeric(exp)),
            ],
        ));
    }
    Ok(ValidAssertion {
        key_id: registered.key_id,
        alg,
    })
}

fn from_numeric(secs: f64) -> OffsetDateTime {
    let clamped = secs.clamp(-62_135_596_800.0, 253_402_300_799.0);
    OffsetDateTime::from_unix_timestamp_nanos((clamped * 1e9) as i128)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `08/18/2024 19:33:23`, as the portal and AADSTS700027 show key validity.
fn portal_date(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[month]/[day]/[year] [hour]:[minute]:[second]");
    t.format(&f).unwrap_or_default()
}
