//! The emulator's PKI: a local CA, the TLS server certificate, client certificates for app key
//! credentials, and thumbprints. Everything is generated on first start and persisted under
//! the state directory so that the CA, client certificates and thumbprints survive restarts.
//! Private keys are never part of the repository; they exist only in the state directory.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rand::SeedableRng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use time::{Duration, OffsetDateTime};

use crate::jose;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("RSA key generation failed: {0}")]
    Rsa(String),
    #[error("{what} is not a valid X.509 certificate")]
    BadCertificate { what: String },
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a file atomically (temp file + rename); private keys get mode 0600.
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> Result<(), PkiError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, data).map_err(io_err(&tmp))?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(io_err(&tmp))?;
    }
    #[cfg(not(unix))]
    let _ = private;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Where RSA keys come from: the OS, or a seed (reproducible keys and thumbprints in tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct KeySource {
    pub seed: Option<u64>,
}

impl KeySource {
    /// A new RSA-2048 private key as PKCS#8 PEM. With a seed, the same `(seed, label)` always
    /// gives the same key; such keys are memoised because generation is slow.
    pub fn rsa_2048_pem(&self, label: &str) -> Result<String, PkiError> {
        static CACHE: OnceLock<Mutex<HashMap<(u64, String), String>>> = OnceLock::new();
        let generate = |rng: &mut dyn rsa::rand_core::CryptoRngCore| -> Result<String, PkiError> {
            let key =
                rsa::RsaPrivateKey::new(rng, 2048).map_err(|e| PkiError::Rsa(e.to_string()))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| PkiError::Rsa(e.to_string()))?;
            Ok(pem.to_string())
        };
        let Some(seed) = self.seed else {
            return generate(&mut rand::rngs::OsRng);
        };
        let cache = CACHE.get_or_init(Default::default);
        let key = (seed, label.to_string());
        if let Some(pem) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(pem.clone());
        }
        let mut material = seed.to_le_bytes().to_vec();
        material.extend_from_slice(label.as_bytes());
        let mut rng = rand_chacha::ChaCha20Rng::from_seed(jose::sha256(&material));
        let pem = generate(&mut rng)?;
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, pem.clone());
        Ok(pem)
    }
}

/// A parsed X.509 certificate with what token validation needs.
#[derive(Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub sha1: [u8; 20],
    pub sha256: [u8; 32],
    /// The PKCS#1 `RSAPublicKey` (empty for non-RSA keys).
    pub rsa_public_key: Vec<u8>,
    pub subject: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for CertInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertInfo")
            .field("subject", &self.subject)
            .field("sha1", &self.sha1_hex())
            .finish()
    }
}

impl CertInfo {
    pub fn from_der(der: &[u8], what: &str) -> Result<CertInfo, PkiError> {
        let bad = || PkiError::BadCertificate {
            what: what.to_string(),
        };
        let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| bad())?;
        if !rest.is_empty() {
            return Err(bad());
        }
        let spki = &cert.tbs_certificate.subject_pki;
        let is_rsa = spki.algorithm.algorithm == x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;
        let validity = cert.validity();
        let ts = |t: x509_parser::time::ASN1Time| t.to_datetime();
        Ok(CertInfo {
            der: der.to_vec(),
            sha1: jose::sha1(der),
            sha256: jose::sha256(der),
            rsa_public_key: if is_rsa {
                spki.subject_public_key.data.to_vec()
            } else {
                Vec::new()
            },
            subject: cert.subject().to_string(),
            not_before: ts(validity.not_before),
            not_after: ts(validity.not_after),
        })
    }

    /// Parses the first `CERTIFICATE` block of a PEM text.
    pub fn from_pem(pem: &str, what: &str) -> Result<CertInfo, PkiError> {
        let der = first_pem_block(pem, "CERTIFICATE").ok_or_else(|| PkiError::BadCertificate {
            what: what.to_string(),
        })?;
        CertInfo::from_der(&der, what)
    }

    /// Upper-case hex SHA-1, as the Azure portal and AADSTS700027 show thumbprints.
    pub fn sha1_hex(&self) -> String {
        hex::encode_upper(self.sha1)
    }

    pub fn sha256_hex(&self) -> String {
        hex::encode_upper(self.sha256)
    }

    /// base64url SHA-1: the JWS `x5t` and the JWKS `kid`.
    pub fn x5t(&self) -> String {
        jose::b64url(&self.sha1)
    }

    pub fn x5t_s256(&self) -> String {
        jose::b64url(&self.sha256)
    }

    pub fn pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }
}

/// Decodes the first PEM block with the given label.
pub fn first_pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Files of a generated client certificate, as the ready file lists them.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    pub info: CertInfo,
    /// One PEM holding certificate and key (what `AZURE_CLIENT_CERTIFICATE_PATH` expects).
    pub combined_path: PathBuf,
    pub certificate_pem_path: PathBuf,
    pub private_key_pem_path: PathBuf,
}

/// The local certificate authority and everything it issues.
pub struct Pki {
    dir: PathBuf,
    keys: KeySource,
    ca_pem: String,
    ca_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    tls_cache: Mutex<HashMap<Vec<String>, Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("dir", &self.dir).finish()
    }
}

const CA_COMMON_NAME: &str = "m365-emulator local CA";

impl Pki {
    /// Loads the CA from `state_dir/pki`, or creates and persists it.
    pub fn load_or_create(state_dir: &Path, keys: KeySource) -> Result<Pki, PkiError> {
        let dir = state_dir.join("pki");
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key.pem");
        let (ca_pem, key) = if cert_path.exists() && key_path.exists() {
            let ca_pem = fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
            let key_pem = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
            (ca_pem, KeyPair::from_pem(&key_pem)?)
        } else {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name = dn(CA_COMMON_NAME);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::days(1);
            params.not_after = now + Duration::days(3650);
            let cert = params.self_signed(&key)?;
            write_atomic(&key_path, key.serialize_pem().as_bytes(), true)?;
            write_atomic(&cert_path, cert.pem().as_bytes(), false)?;
            (cert.pem(), key)
        };
        let ca_der =
            first_pem_block(&ca_pem, "CERTIFICATE").ok_or_else(|| PkiError::BadCertificate {
                what: cert_path.display().to_string(),
            })?;
        let issuer = Issuer::from_ca_cert_der(&ca_der.clone().into(), key)?;
        Ok(Pki {
            dir,
            keys,
            ca_pem,
            ca_der,
            issuer,
            tls_cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn key_source(&self) -> KeySource {
        self.keys
    }

    /// A rustls server configuration with a leaf for `names` (DNS names or IP addresses),
    /// issued by the CA on first use and cached. ALPN offers HTTP/2 and HTTP/1.1.
    pub fn tls_server_config(
        &self,
        names: &[String],
    ) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let mut cache = self.tls_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cfg) = cache.get(names) {
            return Ok(cfg.clone());
        }
        let cfg = self.issue_tls_server_config(names)?;
        cache.insert(names.to_vec(), cfg.clone());
        Ok(cfg)
    }

    /// A fresh leaf for `names` (DNS names or IP addresses), issued by the CA, in a rustls
    /// server configuration offering HTTP/2 and HTTP/1.1; not cached (callers that issue per
    /// host, like the proxy, keep their own bounded cache).
    pub fn issue_tls_server_config(
        &self,
        names: &[String],
    ) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(names.first().map(String::as_str).unwrap_or("localhost"));
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365);
        let cert = params.signed_by(&key, &self.issuer)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// The client certificate for an app credential: loaded from the state directory, or
    /// generated (RSA 2048, self-signed, 10 years) and persisted.
    pub fn client_certificate(
        &self,
        state_dir: &Path,
        client_id: &str,
        name: &str,
        subject: &str,
    ) -> Result<ClientCertificate, PkiError> {
        let dir = state_dir.join("credentials");
        let base = format!("{client_id}-{name}");
        let combined_path = dir.join(format!("{base}.pem"));
        let certificate_pem_path = dir.join(format!("{base}.cert.pem"));
        let private_key_pem_path = dir.join(format!("{base}.key.pem"));
        if certificate_pem_path.exists() && private_key_pem_path.exists() && combined_path.exists()
        {
            let pem =
                fs::read_to_string(&certificate_pem_path).map_err(io_err(&certificate_pem_path))?;
            let info = CertInfo::from_pem(&pem, &certificate_pem_path.display().to_string())?;
            return Ok(ClientCertificate {
                info,
                combined_path,
                certificate_pem_path,
                private_key_pem_path,
            });
        }
        let key_pem = self.keys.rsa_2048_pem(&format!("client:{base}"))?;
        let key = KeyPair::from_pem(&key_pem)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(subject);
        // A fixed validity window keeps seeded certificates byte-identical across runs.
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2035, 1, 1);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(
            &jose::sha1(base.as_bytes())[..16],
        ));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.self_signed(&key)?;
        let info = CertInfo::from_der(cert.der(), &base)?;
        write_atomic(&private_key_pem_path, key_pem.as_bytes(), true)?;
        write_atomic(&certificate_pem_path, cert.pem().as_bytes(), false)?;
        write_atomic(
            &combined_path,
            format!("{}{}", cert.pem(), key_pem).as_bytes(),
            true,
        )?;
        Ok(ClientCertificate {
            info,
            combined_path,
            certificate_pem_path,
            private_key_pem_path,
        })
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_keys_are_reproducible_and_labels_differ() {
        let ks = KeySource { seed: Some(7) };
        let a = ks.rsa_2048_pem("x").expect("key");
        assert_eq!(a, ks.rsa_2048_pem("x").expect("key"));
        assert_ne!(a, ks.rsa_2048_pem("y").expect("key"));
    }

    #[test]
    fn ca_and_client_certificates_persist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ks = KeySource { seed: Some(1) };
        let pki = Pki::load_or_create(dir.path(), ks).expect("pki");
        let c1 = pki
            .client_certificate(dir.path(), "app", "main", "CN app")
            .expect("cert");
        let again = Pki::load_or_create(dir.path(), ks).expect("pki again");
        assert_eq!(pki.ca_pem(), again.ca_pem());
        let c2 = again
            .client_certificate(dir.path(), "app", "main", "CN app")
            .expect("cert");
        assert_eq!(c1.info.sha1, c2.info.sha1);
        assert!(!c1.info.rsa_public_key.is_empty());
        assert!(again
            .tls_server_config(&["localhost".into(), "127.0.0.1".into()])
            .is_ok());
    }
}
