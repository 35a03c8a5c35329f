//! Access tokens as Entra issues them (reference §3): v1 or v2 claim sets chosen by the
//! resource's accepted version, `iat` = `nbf` back-dated five minutes, `exp` = now + lifetime.

use base64::Engine;
use rand::RngCore;
use serde_json::{json, Map, Value};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::jose::{self, JoseError};
use crate::signing::SigningKey;
use crate::world::{Application, Resource, Tenant};

/// Entra back-dates `iat`/`nbf` by about five minutes (seen in real tokens and responses).
pub const BACKDATE: Duration = Duration::seconds(300);

/// How the client authenticated: `appidacr`/`azpacr` "1" = secret, "2" = certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Secret,
    Certificate,
}

impl ClientAuth {
    pub fn acr(self) -> &'static str {
        match self {
            ClientAuth::Secret => "1",
            ClientAuth::Certificate => "2",
        }
    }
}

/// Everything an app-only token says.
pub struct AppOnlyGrant<'a> {
    pub tenant: &'a Tenant,
    pub app: &'a Application,
    /// The service principal's object id (`oid` = `sub`).
    pub service_principal: Uuid,
    pub resource: &'a Resource,
    /// The resource as the client named it (v1 `aud`).
    pub requested_resource: &'a str,
    pub roles: Vec<String>,
    pub auth: ClientAuth,
}

#[derive(Debug, Clone)]
pub struct MintedToken {
    pub access_token: String,
    pub uti: String,
    pub version: u8,
    pub issued_at: OffsetDateTime,
    pub not_before: OffsetDateTime,
    pub expires_on: OffsetDateTime,
}

impl MintedToken {
    /// `expires_in` as Entra reports it: one second short of the lifetime (3599).
    pub fn expires_in(&self, now: OffsetDateTime) -> i64 {
        (self.expires_on - now).whole_seconds() - 1
    }
}

/// Issuer strings. Stable and explicit: never derived from the request's Host.
pub fn issuer_v1(tenant: &str) -> String {
    format!("https://sts.windows.net/{tenant}/")
}

pub fn issuer_v2(issuer_host: &str, tenant: &str) -> String {
    format!("https://{issuer_host}/{tenant}/v2.0")
}

fn opaque(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn mint_app_only(
    key: &SigningKey,
    grant: &AppOnlyGrant<'_>,
    now: OffsetDateTime,
    lifetime: Duration,
    issuer_host: &str,
) -> Result<MintedToken, JoseError> {
    let iat = now - BACKDATE;
    let exp = now + lifetime;
    let uti = opaque(16);
    let tid = grant.tenant.id.to_string();
    let oid = grant.service_principal.to_string();
    let version = grant.resource.access_token_version;
    let mut c = Map::new();
    let mut put = |k: &str, v: Value| {
        c.insert(k.to_string(), v);
    };
    let header;
    if version == 2 {
        header = json!({"typ": "JWT", "alg": "RS256", "kid": key.kid});
        put("aud", json!(grant.resource.app_id.to_string()));
        put("iss", json!(issuer_v2(issuer_host, &tid)));
        put("iat", json!(iat.unix_timestamp()));
        put("nbf", json!(iat.unix_timestamp()));
        put("exp", json!(exp.unix_timestamp()));
        put("aio", json!(opaque(48)));
        put("azp", json!(grant.app.client_id.to_string()));
        put("azpacr", json!(grant.auth.acr()));
        put("idtyp", json!("app"));
        put("oid", json!(oid));
        put("rh", json!(format!("0.A{}.", opaque(40))));
        if !grant.roles.is_empty() {
            put("roles", json!(grant.roles));
        }
        put("sub", json!(oid));
        put("tid", json!(tid));
        put("uti", json!(uti));
        put("ver", json!("2.0"));
    } else {
        header = json!({"typ": "JWT", "alg": "RS256", "x5t": key.kid, "kid": key.kid});
        let iss = issuer_v1(&tid);
        put("aud", json!(grant.requested_resource));
        put("iss", json!(iss));
        put("iat", json!(iat.unix_timestamp()));
        put("nbf", json!(iat.unix_timestamp()));
        put("exp", json!(exp.unix_timestamp()));
        put("aio", json!(opaque(48)));
        put("app_displayname", json!(grant.app.display_name));
        put("appid", json!(grant.app.client_id.to_string()));
        put("appidacr", json!(grant.auth.acr()));
        put("idp", json!(iss));
        put("idtyp", json!("app"));
        put("oid", json!(oid));
        put("rh", json!(format!("0.A{}.", opaque(40))));
        if !grant.roles.is_empty() {
            put("roles", json!(grant.roles));
        }
        put("sub", json!(oid));
        put("tid", json!(tid));
        put("uti", json!(uti));
        put("ver", json!("1.0"));
    }
    let access_token = key.signer.sign_jwt(jose::JwsAlg::RS256, &header, &c)?;
    Ok(MintedToken {
        access_token,
        uti,
        version,
        issued_at: iat,
        not_before: iat,
        expires_on: exp,
    })
}
