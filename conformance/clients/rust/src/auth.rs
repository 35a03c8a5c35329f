//! Tokens from Entra ID's v2 endpoint, cached: app-only (secret or certificate) and, for a
//! Teams user, delegated by the password grant.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::retry::{self, Reply};
use crate::ClientError;

/// A token is renewed this long before it expires.
pub const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// Lifetime of a client assertion (Entra accepts up to 10 minutes... and rejects longer).
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);

/// How the application proves its identity.
pub enum Credential {
    Secret(String),
    /// A certificate and its RSA private key; the assertion carries `x5t#S256`.
    Certificate {
        der: Vec<u8>,
        key: RsaKeyPair,
    },
    /// A Teams user's name and password through a public client (the password grant): the
    /// tokens are delegated, for that user.
    Password {
        username: String,
        password: String,
    },
}

impl Credential {
    /// From one PEM holding the certificate and its PKCS#8 private key (what
    /// `AZURE_CLIENT_CERTIFICATE_PATH` points at).
    pub fn from_combined_pem(pem: &str) -> Result<Credential, ClientError> {
        let der = pem_block(pem, "CERTIFICATE")
            .ok_or_else(|| ClientError::Config("no CERTIFICATE block in the PEM".into()))?;
        let key_der = pem_block(pem, "PRIVATE KEY").ok_or_else(|| {
            ClientError::Config("no PRIVATE KEY (PKCS#8) block in the PEM".into())
        })?;
        let key = RsaKeyPair::from_pkcs8(&key_der)
            .map_err(|e| ClientError::Config(format!("private key: {e}")))?;
        Ok(Credential::Certificate { der, key })
    }
}

/// The base64 body of the first `-----BEGIN {label}-----` block, decoded.
pub fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop].split_whitespace().collect();
    STANDARD.decode(b64).ok()
}

struct Cached {
    scope: String,
    token: String,
    renew_at: Instant,
}

/// Gets and caches tokens for one application (and, with [`Credential::Password`], one user)
/// in one tenant.
pub struct TokenClient {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    credential: Credential,
    cache: Mutex<Vec<Cached>>,
    /// Token requests sent (for callers that report it).
    pub requests: std::sync::atomic::AtomicU32,
}

impl TokenClient {
    /// `authority_host` like `https://login.microsoftonline.com` (or the emulator's URL).
    pub fn new(
        http: reqwest::Client,
        authority_host: &str,
        tenant: &str,
        client_id: &str,
        credential: Credential,
    ) -> TokenClient {
        TokenClient {
            http,
            token_url: format!(
                "{}/{tenant}/oauth2/v2.0/token",
                authority_host.trim_end_matches('/')
            ),
            client_id: client_id.to_string(),
            credential,
            cache: Mutex::new(Vec::new()),
            requests: Default::default(),
        }
    }

    /// A token for `scope` (e.g. `https://manage.office.com/.default`): from the cache while
    /// it has more than [`RENEW_BEFORE`] left, else a new one.
    pub async fn token(&self, scope: &str) -> Result<String, ClientError> {
        if let Some(t) = self.cached(scope) {
            return Ok(t);
        }
        let reply = self.request(scope).await?;
        let body = reply.json().unwrap_or_default();
        let Some(token) = body["access_token"].as_str() else {
            return Err(ClientError::Service {
                service: "entra",
                status: reply.status.as_u16(),
                code: reply.error_code().unwrap_or_else(|| "no_token".into()),
                message: body["error_description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            });
        };
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(0));
        let renew_at = Instant::now() + lifetime.saturating_sub(RENEW_BEFORE);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|c| c.scope != scope);
        cache.push(Cached {
            scope: scope.to_string(),
            token: token.to_string(),
            renew_at,
        });
        Ok(token.to_string())
    }

    /// Sends the request `build` makes with a bearer token for `scope`, under the bounded
    /// retries of [`retry::send`]. A 401 can mean the token expired or was revoked under us
    /// (the service's clock is not ours): one fresh token and one more try, then the answer
    /// stands.
    pub async fn send_with_token(
        &self,
        scope: &str,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<Reply, ClientError> {
        let mut refreshed = false;
        loop {
            let token = self.token(scope).await?;
            let reply = retry::send(|| build(&token)).await?;
            if reply.status.as_u16() == 401 && !refreshed {
                self.forget(scope);
                refreshed = true;
                continue;
            }
            return Ok(reply);
        }
    }

    /// Drops the cached token for `scope` (after a 401: it was revoked or the clock moved).
    pub fn forget(&self, scope: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| c.scope != scope);
    }

    fn cached(&self, scope: &str) -> Option<String> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let c = cache.iter().find(|c| c.scope == scope)?;
        (Instant::now() < c.renew_at).then(|| c.token.clone())
    }

    async fn request(&self, scope: &str) -> Result<Reply, ClientError> {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let grant = match self.credential {
            Credential::Password { .. } => "password",
            _ => "client_credentials",
        };
        let mut form = vec![
            ("grant_type".to_string(), grant.to_string()),
            ("client_id".to_string(), self.client_id.clone()),
            ("scope".to_string(), scope.to_string()),
        ];
        match &self.credential {
            Credential::Secret(s) => form.push(("client_secret".into(), s.clone())),
            Credential::Password { username, password } => {
                form.push(("username".into(), username.clone()));
                form.push(("password".into(), password.clone()));
            }
            Credential::Certificate { der, key } => {
                form.push((
                    "client_assertion_type".into(),
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion".into(), self.assertion(der, key)?));
            }
        }
        Ok(retry::send(|| self.http.post(&self.token_url).form(&form)).await?)
    }

    /// An RS256 assertion: `aud` = the token endpoint exactly, `iss` = `sub` = the client id,
    /// a fresh `jti`, ten minutes of validity, `x5t#S256` of the certificate.
    fn assertion(&self, der: &[u8], key: &RsaKeyPair) -> Result<String, ClientError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let header = json!({"alg": "RS256", "typ": "JWT", "x5t#S256": URL_SAFE_NO_PAD.encode(Sha256::digest(der))});
        let claims = json!({
            "aud": self.token_url, "iss": self.client_id, "sub": self.client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now, "iat": now, "exp": now + ASSERTION_LIFETIME.as_secs(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; key.public_modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| ClientError::Config("RSA signing failed".into()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}
