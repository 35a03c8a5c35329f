//! ACS access tokens: RS256 JWTs with the claims of reference §3.3 (`skypeid`, `scp`, `csi`,
//! `iat`, `exp`, `acsScope`, `resourceId`), signed by a key of their own (not Entra's): an
//! RSA-2048 key with a self-signed certificate, created on first use under
//! `state_dir/acs-signing/` (from the key seed when one is set) and published by the admin
//! API (`GET /_emulator/acs/keys`).

use std::path::Path;
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::jose::{self, JwsAlg, RsaSigningKey};
use crate::pki::{self, CertInfo, KeySource, PkiError};

/// The `scp` value of the public sample token; its meaning is unknown (reference §3.3).
pub const SCP: u32 = 1792;

/// The ACS token-signing key.
#[derive(Debug)]
pub struct AcsSigningKey {
    pub kid: String,
    pub cert: CertInfo,
    signer: RsaSigningKey,
}

impl AcsSigningKey {
    /// Loads the key from `state_dir/acs-signing/`, creating it on first use.
    pub fn load_or_create(state_dir: &Path, source: KeySource) -> Result<AcsSigningKey, PkiError> {
        let dir = state_dir.join("acs-signing");
        let key_path = dir.join("key.pem");
        let cert_path = dir.join("cert.pem");
        if !key_path.exists() || !cert_path.exists() {
            let key_pem = source.rsa_2048_pem("acs-token-signing")?;
            let key = KeyPair::from_pem(&key_pem)?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "acs token signing (m365-emulator)");
            params.distinguished_name = dn;
            params.not_before = rcgen::date_time_ymd(2025, 1, 1);
            params.not_after = rcgen::date_time_ymd(2035, 1, 1);
            params.serial_number = Some(rcgen::SerialNumber::from_slice(
                &jose::sha1(b"acs-token-signing")[..16],
            ));
            let cert = params.self_signed(&key)?;
            pki::write_atomic(&key_path, key_pem.as_bytes(), true)?;
            pki::write_atomic(&cert_path, cert.pem().as_bytes(), false)?;
        }
        let (cert, signer) = crate::signing::load_key_pair(&key_path, &cert_path)?;
        Ok(AcsSigningKey {
            kid: cert.x5t(),
            cert,
            signer,
        })
    }

    /// A JWKS with this key (`n`, `e`, `x5c`, `x5t`).
    pub fn jwks(&self) -> Value {
        use rsa::pkcs1::DecodeRsaPublicKey;
        use rsa::traits::PublicKeyParts;
        let (n, e) = rsa::RsaPublicKey::from_pkcs1_der(&self.cert.rsa_public_key)
            .map(|pk| (pk.n().to_bytes_be(), pk.e().to_bytes_be()))
            .unwrap_or_default();
        json!({"keys": [{
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "x5t": self.cert.x5t(),
            "n": jose::b64url(&n),
            "e": jose::b64url(&e),
            "x5c": [jose::b64std(&self.cert.der)],
        }]})
    }

    /// Signs an ACS token for `skypeid` (the identity without `8:`) with scopes `acs_scope`.
    pub fn mint(&self, claims: &AcsClaims) -> Result<String, jose::JoseError> {
        let header = json!({"alg": "RS256", "kid": self.kid, "x5t": self.cert.x5t(), "typ": "JWT"});
        let body = json!({
            "skypeid": claims.skypeid,
            "scp": SCP,
            "csi": claims.iat.to_string(),
            "iat": claims.iat,
            "exp": claims.exp,
            "acsScope": claims.acs_scope,
            "resourceId": claims.resource_id,
        });
        self.signer.sign_jwt(JwsAlg::RS256, &header, &body)
    }

    /// Checks the signature and `exp` of a token this key signed; returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Map<String, Value>, &'static str> {
        let jws = jose::parse_compact(token).map_err(|_| "malformed")?;
        if jws.header.get("kid").and_then(Value::as_str) != Some(self.kid.as_str()) {
            return Err("unknown_key");
        }
        if !jose::verify_rsa(
            JwsAlg::RS256,
            &self.cert.rsa_public_key,
            jws.signing_input.as_bytes(),
            &jws.signature,
        ) {
            return Err("bad_signature");
        }
        let exp = jws
            .claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or("malformed")?;
        if now >= exp {
            return Err("expired");
        }
        Ok(jws.claims)
    }
}

/// What goes into an ACS token.
#[derive(Debug, Clone)]
pub struct AcsClaims {
    pub skypeid: String,
    pub acs_scope: String,
    pub resource_id: String,
    pub iat: i64,
    pub exp: i64,
}

/// `expiresOn` as the service writes it: `2025-07-10T21:39:39.3244584+00:00` (seven digits).
pub fn expires_on(exp: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(exp).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let base = t.format(&Rfc3339).unwrap_or_default();
    // Rfc3339 gives `…:SSZ` for whole seconds; ACS writes 7 fractional digits and +00:00.
    format!("{}.0000000+00:00", base.trim_end_matches('Z'))
}

/// The key, shared once created.
pub type SharedKey = Arc<AcsSigningKey>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_on_has_seven_digits_and_offset() {
        assert_eq!(
            expires_on(1_620_236_139),
            "2021-05-05T17:35:39.0000000+00:00"
        );
    }
}
