//! The token-signing keys: RSA 2048 with self-signed certificates, `kid` = `x5t` = base64url
//! SHA-1 of the certificate. Persisted under `state_dir/signing` so `kid` survives restarts.
//! Rotation makes a new key active and keeps the old one published (JWKS) for an overlap.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::jose::{self, JwsAlg, RsaSigningKey};
use crate::pki::{self, CertInfo, KeySource, PkiError};

/// One signing key with its certificate.
#[derive(Debug)]
pub struct SigningKey {
    pub kid: String,
    pub cert: CertInfo,
    pub signer: RsaSigningKey,
    /// When the key stops being published (set when a newer key replaces it).
    pub retire_at: Option<OffsetDateTime>,
    file_stem: String,
}

impl SigningKey {
    pub fn sign_jwt<H: Serialize, C: Serialize>(
        &self,
        header: &H,
        claims: &C,
    ) -> Result<String, jose::JoseError> {
        self.signer.sign_jwt(JwsAlg::RS256, header, claims)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct IndexEntry {
    file: String,
    #[serde(with = "time::serde::rfc3339::option")]
    retire_at: Option<OffsetDateTime>,
}

/// The ordered key set: the first key signs, the rest are still published until retired.
#[derive(Debug)]
pub struct SigningKeys {
    dir: PathBuf,
    source: KeySource,
    keys: RwLock<Vec<Arc<SigningKey>>>,
}

impl SigningKeys {
    pub fn load_or_create(state_dir: &Path, source: KeySource) -> Result<SigningKeys, PkiError> {
        let dir = state_dir.join("signing");
        let index_path = dir.join("index.json");
        let set = SigningKeys {
            dir,
            source,
            keys: RwLock::new(Vec::new()),
        };
        let entries: Vec<IndexEntry> = match fs::read(&index_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| PkiError::Io {
                path: index_path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?,
            Err(_) => Vec::new(),
        };
        let mut keys = Vec::new();
        for e in entries {
            keys.push(Arc::new(set.load_key(&e.file, e.retire_at)?));
        }
        if keys.is_empty() {
            keys.push(Arc::new(set.create_key(0)?));
        }
        *set.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        set.save()?;
        Ok(set)
    }

    fn load_key(
        &self,
        stem: &str,
        retire_at: Option<OffsetDateTime>,
    ) -> Result<SigningKey, PkiError> {
        let key_path = self.dir.join(format!("{stem}.key.pem"));
        let cert_path = self.dir.join(format!("{stem}.cert.pem"));
        let (cert, signer) = load_key_pair(&key_path, &cert_path)?;
        Ok(SigningKey {
            kid: cert.x5t(),
            cert,
            signer,
            retire_at,
            file_stem: stem.to_string(),
        })
    }

    fn create_key(&self, n: usize) -> Result<SigningKey, PkiError> {
        let stem = format!("key-{n}");
        let key_pem = self.source.rsa_2048_pem(&format!("signing:{n}"))?;
        let key = KeyPair::from_pem(&key_pem)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "accounts.accesscontrol.windows.net");
        params.distinguished_name = dn;
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2035, 1, 1);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(
            &jose::sha1(stem.as_bytes())[..16],
        ));
        let cert = params.self_signed(&key)?;
        pki::write_atomic(
            &self.dir.join(format!("{stem}.key.pem")),
            key_pem.as_bytes(),
            true,
        )?;
        pki::write_atomic(
            &self.dir.join(format!("{stem}.cert.pem")),
            cert.pem().as_bytes(),
            false,
        )?;
        self.load_key(&stem, None)
    }

    fn save(&self) -> Result<(), PkiError> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let entries: Vec<IndexEntry> = keys
            .iter()
            .map(|k| IndexEntry {
                file: k.file_stem.clone(),
                retire_at: k.retire_at,
            })
            .collect();
        let json = serde_json::to_vec_pretty(&entries).map_err(|e| PkiError::Rsa(e.to_string()))?;
        pki::write_atomic(&self.dir.join("index.json"), &json, false)
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> Arc<SigningKey> {
        // The set is never empty: load_or_create guarantees one key.
        self.keys.read().unwrap_or_else(|e| e.into_inner())[0].clone()
    }

    /// Keys in the JWKS at `now`: the active key and those still inside their overlap.
    pub fn published(&self, now: OffsetDateTime) -> Vec<Arc<SigningKey>> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|k| k.retire_at.is_none_or(|t| t > now))
            .cloned()
            .collect()
    }

    /// Finds a published key by `kid`.
    pub fn find(&self, kid: &str, now: OffsetDateTime) -> Option<Arc<SigningKey>> {
        self.published(now).into_iter().find(|k| k.kid == kid)
    }

    /// Makes a new key active; the previous keys stay published until `now + overlap`.
    pub fn rotate(
        &self,
        now: OffsetDateTime,
        overlap: Duration,
    ) -> Result<Arc<SigningKey>, PkiError> {
        let n = {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            keys.iter()
                .filter_map(|k| k.file_stem.strip_prefix("key-")?.parse::<usize>().ok())
                .max()
                .map_or(0, |m| m + 1)
        };
        let new_key = Arc::new(self.create_key(n)?);
        {
            let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
            let retire = now + overlap;
            let mut next = vec![new_key.clone()];
            for k in keys.iter() {
                let retire_at = Some(k.retire_at.map_or(retire, |t| t.min(retire)));
                if retire_at.is_some_and(|t| t <= now) {
                    continue;
                }
                next.push(Arc::new(self.load_key(&k.file_stem, retire_at)?));
            }
            *keys = next;
        }
        self.save()?;
        Ok(new_key)
    }
}

/// A signing key and its certificate from PEM files (a PKCS#8 key, a certificate).
pub fn load_key_pair(
    key_path: &Path,
    cert_path: &Path,
) -> Result<(CertInfo, RsaSigningKey), PkiError> {
    let read = |p: &Path| {
        fs::read_to_string(p).map_err(|source| PkiError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let key_pem = read(key_path)?;
    let cert = CertInfo::from_pem(&read(cert_path)?, &cert_path.display().to_string())?;
    let der = pki::first_pem_block(&key_pem, "PRIVATE KEY")
        .ok_or_else(|| PkiError::Rsa(format!("{} holds no PKCS#8 key", key_path.display())))?;
    let signer = RsaSigningKey::from_pkcs8_der(&der).map_err(|e| PkiError::Rsa(e.to_string()))?;
    Ok((cert, signer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_survives_restart_and_rotation_overlaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ks = KeySource { seed: Some(3) };
        let set = SigningKeys::load_or_create(dir.path(), ks).expect("keys");
        let kid = set.active().kid.clone();
        let again = SigningKeys::load_or_create(dir.path(), ks).expect("keys again");
        assert_eq!(again.active().kid, kid);
        let now = OffsetDateTime::now_utc();
        let new = again.rotate(now, Duration::hours(1)).expect("rotate");
        assert_ne!(new.kid, kid);
        assert_eq!(again.published(now).len(), 2);
        assert_eq!(again.published(now + Duration::hours(2)).len(), 1);
        let reloaded = SigningKeys::load_or_create(dir.path(), ks).expect("reload");
        assert_eq!(reloaded.active().kid, new.kid);
        assert!(reloaded.find(&kid, now).is_some());
    }
}
