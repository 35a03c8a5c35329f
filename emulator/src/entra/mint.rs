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
    /// A public client: no credential (`appidacr`/`azpacr` "0").
    Public,
    Secret,
    Certificate,
}

impl ClientAuth {
    pub fn acr(self) -> &'static str {
        match self {
            ClientAuth::Public => "0",
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

/// The JWS header of an access token: v1 tokens also carry the legacy `x5t`.
pub fn token_header(key: &SigningKey, v1: bool) -> Value {
    if v1 {
        json!({"typ": "JWT", "alg": "RS256", "x5t": key.kid, "kid": key.kid})
    } else {
        json!({"typ": "JWT", "alg": "RS256", "kid": key.kid})
    }
}

/// The claims every token starts with, in Entra's order: `aud`, `iss`, `iat`, `nbf` (= `iat`),
/// `exp`.
pub fn base_claims(
    aud: Value,
    iss: String,
    iat: OffsetDateTime,
    exp: OffsetDateTime,
) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("aud".into(), aud);
    c.insert("iss".into(), json!(iss));
    c.insert("iat".into(), json!(iat.unix_timestamp()));
    c.insert("nbf".into(), json!(iat.unix_timestamp()));
    c.insert("exp".into(), json!(exp.unix_timestamp()));
    c
}

/// Signs access-token claims with the header of their version and records the token's times.
pub fn seal(
    key: &SigningKey,
    claims: &Map<String, Value>,
    version: u8,
    uti: String,
    iat: OffsetDateTime,
    exp: OffsetDateTime,
) -> Result<MintedToken, JoseError> {
    let access_token = key.signer.sign_jwt(
        jose::JwsAlg::RS256,
        &token_header(key, version != 2),
        claims,
    )?;
    Ok(MintedToken {
        access_token,
        uti,
        version,
        issued_at: iat,
        not_before: iat,
        expires_on: exp,
    })
}

/// Random base64url text for opaque claims (`aio`, `rh`, `uti`).
pub fn opaque(len: usize) -> String {
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
    AppOnlyRecipe::new(key, grant, lifetime, issuer_host).mint(key, now)
}

/// Everything an app-only token says except its times and its random `uti`/`aio`/`rh`: two
/// tokens minted from equal recipes in the same second have the same claims but for those
/// three. The pre-signed pool ([`super::presign`]) is keyed by it, so a pre-signed token is
/// only ever handed out for a grant that would have minted the same claims.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppOnlyRecipe {
    /// The signing key's `kid`: a rotated key makes a different recipe.
    pub kid: String,
    pub version: u8,
    /// v2: the resource's app id; v1: the resource as the client named it.
    pub aud: String,
    pub tid: String,
    /// The service principal's object id (`oid` = `sub`).
    pub oid: String,
    pub client_id: String,
    pub display_name: String,
    pub acr: &'static str,
    pub roles: Vec<String>,
    pub issuer_host: String,
    pub lifetime: Duration,
}

impl AppOnlyRecipe {
    pub fn new(
        key: &SigningKey,
        grant: &AppOnlyGrant<'_>,
        lifetime: Duration,
        issuer_host: &str,
    ) -> AppOnlyRecipe {
        let version = grant.resource.access_token_version;
        AppOnlyRecipe {
            kid: key.kid.clone(),
            version,
            aud: if version == 2 {
                grant.resource.app_id.to_string()
            } else {
                grant.requested_resource.to_string()
            },
            tid: grant.tenant.id.to_string(),
            oid: grant.service_principal.to_string(),
            client_id: grant.app.client_id.to_string(),
            display_name: grant.app.display_name.clone(),
            acr: grant.auth.acr(),
            roles: grant.roles.clone(),
            issuer_host: issuer_host.to_string(),
            lifetime,
        }
    }

    /// The `iat`/`nbf` and `exp` claims of a token minted from this recipe at `now`.
    pub fn claim_times(&self, now: OffsetDateTime) -> (i64, i64) {
        (
            (now - BACKDATE).unix_timestamp(),
            (now + self.lifetime).unix_timestamp(),
        )
    }

    /// Mints a token at `now` with `key` (whose `kid` is the recipe's).
    pub fn mint(&self, key: &SigningKey, now: OffsetDateTime) -> Result<MintedToken, JoseError> {
        let iat = now - BACKDATE;
        let exp = now + self.lifetime;
        let uti = opaque(16);
        let tid = &self.tid;
        let oid = &self.oid;
        let version = self.version;
        let mut c = if version == 2 {
            base_claims(json!(self.aud), issuer_v2(&self.issuer_host, tid), iat, exp)
        } else {
            base_claims(json!(self.aud), issuer_v1(tid), iat, exp)
        };
        let mut put = |k: &str, v: Value| {
            c.insert(k.to_string(), v);
        };
        // Claims in Entra's order; only the client's claims differ between versions.
        put("aio", json!(opaque(48)));
        if version == 2 {
            put("azp", json!(self.client_id));
            put("azpacr", json!(self.acr));
        } else {
            put("app_displayname", json!(self.display_name));
            put("appid", json!(self.client_id));
            put("appidacr", json!(self.acr));
            put("idp", json!(issuer_v1(tid)));
        }
        put("idtyp", json!("app"));
        put("oid", json!(oid));
        put("rh", json!(format!("0.A{}.", opaque(40))));
        if !self.roles.is_empty() {
            put("roles", json!(self.roles));
        }
        put("sub", json!(oid));
        put("tid", json!(tid));
        put("uti", json!(uti));
        put("ver", json!(if version == 2 { "2.0" } else { "1.0" }));
        seal(key, &c, version, uti, iat, exp)
    }
}

/// Everything a delegated (user) token says.
pub struct DelegatedGrant<'a> {
    pub tenant: &'a Tenant,
    pub app: &'a Application,
    pub user: &'a crate::world::User,
    pub resource: &'a Resource,
    /// The resource as the client named it (v1 `aud`).
    pub requested_resource: &'a str,
    pub scopes: Vec<String>,
    pub auth: ClientAuth,
    pub nonce: Option<&'a str>,
}

/// A pairwise subject: stable per user and app, different across apps (as Entra's `sub`).
fn pairwise_sub(user: &Uuid, app: &Uuid) -> String {
    let mut material = user.as_bytes().to_vec();
    material.extend_from_slice(app.as_bytes());
    jose::b64url(&jose::sha256(&material))[..43].to_string()
}

fn user_names(c: &mut Map<String, Value>, user: &crate::world::User) {
    if let Some(f) = &user.surname {
        c.insert("family_name".into(), json!(f));
    }
    if let Some(g) = &user.given_name {
        c.insert("given_name".into(), json!(g));
    }
}

/// A delegated access token for `grant.resource`.
pub fn mint_delegated(
    key: &SigningKey,
    grant: &DelegatedGrant<'_>,
    now: OffsetDateTime,
    lifetime: Duration,
    issuer_host: &str,
) -> Result<MintedToken, JoseError> {
    let iat = now - BACKDATE;
    let exp = now + lifetime;
    let uti = opaque(16);
    let tid = grant.tenant.id.to_string();
    let oid = grant.user.object_id.to_string();
    let version = grant.resource.access_token_version;
    let scp = grant.scopes.join(" ");
    let mut c = if version == 2 {
        base_claims(
            json!(grant.resource.app_id.to_string()),
            issuer_v2(issuer_host, &tid),
            iat,
            exp,
        )
    } else {
        base_claims(json!(grant.requested_resource), issuer_v1(&tid), iat, exp)
    };
    if version == 2 {
        c.insert("aio".into(), json!(opaque(48)));
        c.insert("azp".into(), json!(grant.app.client_id.to_string()));
        c.insert("azpacr".into(), json!(grant.auth.acr()));
        c.insert("name".into(), json!(grant.user.display_name));
        c.insert("oid".into(), json!(oid));
        c.insert(
            "preferred_username".into(),
            json!(grant.user.user_principal_name),
        );
        c.insert("rh".into(), json!(format!("0.A{}.", opaque(40))));
        c.insert("scp".into(), json!(scp));
        c.insert(
            "sub".into(),
            json!(pairwise_sub(&grant.user.object_id, &grant.app.client_id)),
        );
        c.insert("tid".into(), json!(tid));
        c.insert("uti".into(), json!(uti));
        c.insert("ver".into(), json!("2.0"));
    } else {
        c.insert("acr".into(), json!("1"));
        c.insert("aio".into(), json!(opaque(48)));
        c.insert("amr".into(), json!(["pwd"]));
        c.insert("app_displayname".into(), json!(grant.app.display_name));
        c.insert("appid".into(), json!(grant.app.client_id.to_string()));
        c.insert("appidacr".into(), json!(grant.auth.acr()));
        user_names(&mut c, grant.user);
        c.insert("idtyp".into(), json!("user"));
        c.insert("ipaddr".into(), json!("127.0.0.1"));
        c.insert("name".into(), json!(grant.user.display_name));
        c.insert("oid".into(), json!(oid));
        c.insert("rh".into(), json!(format!("0.A{}.", opaque(40))));
        c.insert("scp".into(), json!(scp));
        c.insert(
            "sub".into(),
            json!(pairwise_sub(&grant.user.object_id, &grant.app.client_id)),
        );
        c.insert("tid".into(), json!(tid));
        c.insert("unique_name".into(), json!(grant.user.user_principal_name));
        c.insert("upn".into(), json!(grant.user.user_principal_name));
        c.insert("uti".into(), json!(uti));
        c.insert("ver".into(), json!("1.0"));
    }
    seal(key, &c, version, uti, iat, exp)
}

/// An id token for the client (`aud` = client id), v2 or v1 claim set.
pub fn mint_id_token(
    key: &SigningKey,
    grant: &DelegatedGrant<'_>,
    v2: bool,
    now: OffsetDateTime,
    issuer_host: &str,
) -> Result<String, JoseError> {
    let iat = now - BACKDATE;
    let exp = now + Duration::hours(1);
    let tid = grant.tenant.id.to_string();
    let iss = if v2 {
        issuer_v2(issuer_host, &tid)
    } else {
        issuer_v1(&tid)
    };
    let mut c = base_claims(json!(grant.app.client_id.to_string()), iss, iat, exp);
    if !v2 {
        c.insert("amr".into(), json!(["pwd"]));
        user_names(&mut c, grant.user);
        c.insert("ipaddr".into(), json!("127.0.0.1"));
    }
    c.insert("name".into(), json!(grant.user.display_name));
    if let Some(n) = grant.nonce {
        c.insert("nonce".into(), json!(n));
    }
    c.insert("oid".into(), json!(grant.user.object_id.to_string()));
    if v2 {
        c.insert(
            "preferred_username".into(),
            json!(grant.user.user_principal_name),
        );
    }
    c.insert("rh".into(), json!(format!("0.A{}.", opaque(40))));
    c.insert(
        "sub".into(),
        json!(pairwise_sub(&grant.user.object_id, &grant.app.client_id)),
    );
    c.insert("tid".into(), json!(tid));
    if !v2 {
        c.insert("unique_name".into(), json!(grant.user.user_principal_name));
        c.insert("upn".into(), json!(grant.user.user_principal_name));
    }
    c.insert("uti".into(), json!(opaque(16)));
    c.insert("ver".into(), json!(if v2 { "2.0" } else { "1.0" }));
    key.signer
        .sign_jwt(jose::JwsAlg::RS256, &token_header(key, false), &c)
}
