//! The "world": tenants, app registrations, resources, consents, users, managed identities and
//! ACS resources the emulator serves. Loaded from TOML (the embedded default lives in
//! `fixtures/default-world.toml`), validated once, then treated as the immutable initial state
//! that `/_emulator/reset` returns to.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The default world compiled into the binary.
pub const DEFAULT_WORLD_TOML: &str = include_str!("../../fixtures/default-world.toml");

/// A world file could not be read, parsed or validated. The message always names the key.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("cannot read world file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("world file {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("world file {origin}: invalid value at `{key}`: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

/// Server settings a world file may carry (`[server]`). Flags and `M365EMU_*` variables win.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub bind: Option<String>,
    pub https_port: Option<u16>,
    pub http_port: Option<u16>,
    /// Accepted clock skew, in seconds, for client assertions (default 300).
    pub clock_skew_seconds: Option<u64>,
    /// Lifetime of issued access tokens, in seconds (default 3600: `expires_in` 3599).
    pub token_lifetime_seconds: Option<u64>,
    /// Host used in token issuers (default `login.microsoftonline.com`; v1 uses `sts.windows.net`).
    pub issuer_host: Option<String>,
    /// Seed for all generated RSA keys (reproducible thumbprints); absent = OS randomness.
    pub key_seed: Option<u64>,
    /// Entries the request journal keeps (default 10000).
    pub journal_capacity: Option<usize>,
    /// Headless sign-in with `login_hint` (default false); see the README.
    pub auto_sign_in: Option<bool>,
    /// Port of the forward proxy (proxy mode; absent = no proxy, 0 = a free port).
    pub proxy_port: Option<u16>,
    /// Office 365 Management Activity API knobs (`[server.management]`).
    #[serde(default, skip_serializing_if = "ManagementSection::is_empty")]
    pub management: ManagementSection,
    /// Azure Communication Services knobs (`[server.acs]`).
    #[serde(default, skip_serializing_if = "AcsSection::is_empty")]
    pub acs: AcsSection,
}

/// `[server.acs]`: HMAC verification.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AcsSection {
    /// Accepted difference between `x-ms-date` and the emulator's clock, in seconds (default 300).
    pub hmac_clock_skew_seconds: Option<u64>,
    /// Send the expected string to sign with HMAC failures (default true).
    pub expected_string_to_sign_header: Option<bool>,
}

impl AcsSection {
    fn is_empty(&self) -> bool {
        self == &AcsSection::default()
    }
}

/// `[server.management]`: paging, the synthetic feed's volume, webhook trust.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ManagementSection {
    /// Entries per `/subscriptions/content` page (default 200).
    pub page_size: Option<usize>,
    /// A content blob per content type every N seconds (default 300).
    pub blob_interval_seconds: Option<u64>,
    /// Records in each blob (default 20).
    pub records_per_blob: Option<u32>,
    /// PEM file of extra CA certificates the webhook client trusts (besides the emulator's
    /// own CA); relative to the world file.
    pub webhook_ca_file: Option<PathBuf>,
    /// Host names webhooks may point at; absent = loopback only (`localhost`, `127.0.0.1`,
    /// `::1`, `*.localhost`). No other receiver is ever contacted.
    pub webhook_allowed_hosts: Option<Vec<String>>,
    /// The window `subscriptions/content` uses when the times are omitted: `last_24_hours`
    /// (the reference page, default) or `utc_day` (the troubleshooting page: since midnight UTC).
    pub default_window: Option<DefaultWindow>,
    /// The code of a refused window: `AF20055` (default, what clients see today) or `AF20030`.
    pub window_error_code: Option<String>,
    /// Accept windows longer than 24 hours with a partial 200 (only their first 24 hours
    /// are listed) instead of refusing them (default false).
    pub accept_long_windows: Option<bool>,
    /// Minimum seconds between two `/start` calls for a content type (the documented 15
    /// minutes is 900; default 0 = off). `/stop` is not limited.
    pub start_cooldown_seconds: Option<u64>,
    /// What a `/start` inside the cooldown gets: `throttle` (AF429, default) or `silent`
    /// (200 "enabled" while nothing changes, as observed after stop + immediate start).
    pub start_cooldown_mode: Option<CooldownMode>,
    /// Requests per minute per pool: a named `PublisherIdentifier` has its own pool, calls
    /// without one share the tenant's (default 2000; 0 = unlimited).
    pub throttle_per_minute: Option<u32>,
    /// Status of AF429: 403 (Microsoft's sample, default) or 429 (with `Retry-After`).
    pub throttle_status: Option<u16>,
    /// Status of a successful `/stop`: 200 (documented, default) or 204.
    pub stop_status: Option<u16>,
    /// Percent of blobs that become listable only `late_blob_delay_seconds` after their
    /// `contentCreated` (default 0).
    pub late_blob_percent: Option<u8>,
    /// How late a late blob is (default 3600).
    pub late_blob_delay_seconds: Option<u64>,
    /// Percent of records whose `CreationTime` lies before their blob's interval, up to
    /// `out_of_order_max_seconds` earlier; blobs with such records are not sorted (default 0).
    pub out_of_order_percent: Option<u8>,
    /// How far back an out-of-order record may be (default 86400).
    pub out_of_order_max_seconds: Option<u64>,
    /// Percent of blobs that repeat some records (same `Id`) of an earlier blob (default 0).
    pub duplicate_percent: Option<u8>,
    /// A new subscription also lists blobs created up to this many seconds before it started
    /// (default 0: only content from the start on).
    pub backfill_seconds: Option<u64>,
}

/// `[server.management] default_window`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DefaultWindow {
    #[default]
    #[serde(rename = "last_24_hours")]
    Last24Hours,
    UtcDay,
}

/// `[server.management] start_cooldown_mode`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum CooldownMode {
    #[default]
    Throttle,
    Silent,
}

impl ManagementSection {
    fn is_empty(&self) -> bool {
        self == &ManagementSection::default()
    }

    /// Checks the knobs that can also change at run time (`PATCH /_emulator/management/settings`).
    pub fn validate_behaviour(&self) -> Result<(), (&'static str, String)> {
        if let Some(n) = self.page_size.filter(|n| !(1..=10_000).contains(n)) {
            return Err(("page_size", format!("{n} is outside 1..=10000")));
        }
        if let Some(n) = self
            .blob_interval_seconds
            .filter(|n| !(1..=86_400).contains(n))
        {
            return Err(("blob_interval_seconds", format!("{n} is outside 1..=86400")));
        }
        if let Some(n) = self.records_per_blob.filter(|n| !(1..=100_000).contains(n)) {
            return Err(("records_per_blob", format!("{n} is outside 1..=100000")));
        }
        if let Some(code) = &self.window_error_code {
            if code != "AF20055" && code != "AF20030" {
                return Err((
                    "window_error_code",
                    format!("'{code}' is neither AF20055 nor AF20030"),
                ));
            }
        }
        if let Some(n) = self.throttle_status.filter(|n| *n != 403 && *n != 429) {
            return Err(("throttle_status", format!("{n} is neither 403 nor 429")));
        }
        if let Some(n) = self.stop_status.filter(|n| *n != 200 && *n != 204) {
            return Err(("stop_status", format!("{n} is neither 200 nor 204")));
        }
        for (key, v) in [
            ("late_blob_percent", self.late_blob_percent),
            ("out_of_order_percent", self.out_of_order_percent),
            ("duplicate_percent", self.duplicate_percent),
        ] {
            if let Some(n) = v.filter(|n| *n > 100) {
                return Err((key, format!("{n} is outside 0..=100")));
            }
        }
        // A week is the retention: anything longer would only hide content.
        for (key, v) in [
            ("late_blob_delay_seconds", self.late_blob_delay_seconds),
            ("out_of_order_max_seconds", self.out_of_order_max_seconds),
            ("backfill_seconds", self.backfill_seconds),
            ("start_cooldown_seconds", self.start_cooldown_seconds),
        ] {
            if let Some(n) = v.filter(|n| *n > 7 * 86_400) {
                return Err((key, format!("{n} is outside 0..=604800")));
            }
        }
        Ok(())
    }

    /// `self` with every knob `patch` sets replaced.
    pub fn patched(&self, patch: &ManagementSection) -> ManagementSection {
        macro_rules! pick {
            ($($f:ident),*) => {
                ManagementSection { $($f: patch.$f.clone().or_else(|| self.$f.clone()),)* }
            };
        }
        pick!(
            page_size,
            blob_interval_seconds,
            records_per_blob,
            webhook_ca_file,
            webhook_allowed_hosts,
            default_window,
            window_error_code,
            accept_long_windows,
            start_cooldown_seconds,
            start_cooldown_mode,
            throttle_per_minute,
            throttle_status,
            stop_status,
            late_blob_percent,
            late_blob_delay_seconds,
            out_of_order_percent,
            out_of_order_max_seconds,
            duplicate_percent,
            backfill_seconds
        )
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        self.validate_behaviour()?;
        if let Some(path) = &self.webhook_ca_file {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                (
                    "webhook_ca_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            if crate::pki::first_pem_block(&pem, "CERTIFICATE").is_none() {
                return Err((
                    "webhook_ca_file",
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct World {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default, rename = "tenants")]
    pub tenants: Vec<Tenant>,
    #[serde(default, rename = "resources")]
    pub resources: Vec<Resource>,
    #[serde(default, rename = "applications")]
    pub applications: Vec<Application>,
    #[serde(default, rename = "managed_identities")]
    pub managed_identities: Vec<ManagedIdentity>,
    #[serde(default, rename = "acs")]
    pub acs: Vec<AcsResource>,
    /// Fault rules loaded at start (and again on reset), in `/_emulator/faults` format.
    #[serde(default)]
    pub faults: Vec<serde_json::Value>,
    /// Graph chats, application access policies, SfB trusted endpoints.
    #[serde(default)]
    pub teams: crate::graph::config::TeamsSection,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub id: Uuid,
    /// The initial `*.onmicrosoft.com` domain.
    pub domain: String,
    pub display_name: String,
    /// Further verified domains that also resolve to this tenant.
    #[serde(default)]
    pub extra_domains: Vec<String>,
    /// Unified audit logging on (the Management Activity API refuses subscriptions when off).
    #[serde(default = "yes")]
    pub audit_logging: bool,
    #[serde(default)]
    pub users: Vec<User>,
    /// Service principals (enterprise applications) and the app roles an admin granted them.
    #[serde(default)]
    pub service_principals: Vec<ServicePrincipal>,
    /// Delegated permissions single users consented to for themselves.
    #[serde(default)]
    pub user_consents: Vec<UserConsent>,
}

/// A user's own consent to delegated permissions of an app (an oauth2PermissionGrant for
/// one principal).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserConsent {
    /// The user's object id.
    pub user: Uuid,
    pub app_id: Uuid,
    /// Resource App ID URI → scopes.
    #[serde(default)]
    pub scopes: BTreeMap<String, Vec<String>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub object_id: Uuid,
    pub user_principal_name: String,
    pub display_name: String,
    pub password: String,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub surname: Option<String>,
    /// `user` (a person) or `resource_account` (a Teams resource account).
    #[serde(default)]
    pub kind: UserKind,
    #[serde(default = "yes")]
    pub teams_enabled: bool,
    /// Holds a directory admin role (may grant tenant-wide admin consent).
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    #[default]
    User,
    ResourceAccount,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServicePrincipal {
    /// The application (client) id this service principal represents.
    pub app_id: Uuid,
    /// Object id of the service principal in this tenant (the `oid` of its app-only tokens).
    /// Derived from tenant and app id when absent.
    #[serde(default)]
    pub object_id: Option<Uuid>,
    /// Admin-consented application permissions: resource App ID URI → app role values.
    #[serde(default)]
    pub app_role_grants: BTreeMap<String, Vec<String>>,
    /// Admin-consented delegated permissions for all users: resource App ID URI → scopes.
    #[serde(default)]
    pub delegated_grants: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// The App ID URI, e.g. `https://manage.office.com`.
    pub app_id_uri: String,
    /// Further identifier URIs that name the same resource.
    #[serde(default)]
    pub extra_app_id_uris: Vec<String>,
    pub app_id: Uuid,
    pub display_name: String,
    /// `accessTokenAcceptedVersion`: 1 (the default, as for Microsoft first-party APIs) or 2.
    #[serde(default = "one")]
    pub access_token_version: u8,
    #[serde(default)]
    pub app_roles: Vec<AppRole>,
    /// Delegated permissions (scopes) the resource exposes.
    #[serde(default)]
    pub scopes: Vec<String>,
}

fn one() -> u8 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppRole {
    pub value: String,
    #[serde(default)]
    pub id: Option<Uuid>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub client_id: Uuid,
    pub display_name: String,
    /// The tenant that owns the registration (GUID or domain of a world tenant).
    pub home_tenant: String,
    #[serde(default)]
    pub multi_tenant: bool,
    /// Public client (no secret; delegated flows only).
    #[serde(default)]
    pub public_client: bool,
    #[serde(default)]
    pub reply_urls: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<ClientSecret>,
    #[serde(default)]
    pub certificates: Vec<CertificateCredential>,
    /// Required resource access: resource App ID URI → permissions requested.
    #[serde(default)]
    pub required_resource_access: Vec<RequiredResourceAccess>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientSecret {
    pub value: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// RFC 3339 expiry; absent = never expires.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertificateCredential {
    /// A short name; generated files are `<client_id>-<name>.pem` in the state directory.
    pub name: String,
    /// A PEM certificate you bring (public part only). Absent = the emulator generates an RSA
    /// 2048 key pair and certificate for this credential and keeps it in the state directory.
    #[serde(default)]
    pub certificate_pem_path: Option<PathBuf>,
    /// Inline PEM certificate, instead of a path.
    #[serde(default)]
    pub certificate_pem: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RequiredResourceAccess {
    pub resource: String,
    #[serde(default)]
    pub app_roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ManagedIdentity {
    pub name: String,
    pub tenant: String,
    pub client_id: Uuid,
    pub object_id: Uuid,
    /// `system` or `user` assigned.
    #[serde(default)]
    pub kind: ManagedIdentityKind,
    /// ARM resource id (`mi_res_id` / `msi_res_id` selector).
    #[serde(default)]
    pub resource_id: Option<String>,
    /// Granted app roles: resource App ID URI → role values.
    #[serde(default)]
    pub app_role_grants: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ManagedIdentityKind {
    #[default]
    System,
    User,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AcsResource {
    pub name: String,
    /// The resource host, e.g. `contoso-acs.communication.azure.com`.
    pub host: String,
    /// The immutable resource id (a GUID) that appears in ACS identities.
    pub resource_id: Uuid,
    pub tenant: String,
    /// Base64 access keys.
    pub primary_key: String,
    pub secondary_key: String,
}

impl World {
    /// The embedded default world.
    pub fn default_world() -> Result<World, WorldError> {
        World::from_toml_str(DEFAULT_WORLD_TOML, "<embedded default world>")
    }

    pub fn from_file(path: &Path) -> Result<World, WorldError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorldError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        let mut world = World::parse_toml(&text, &origin)?;
        // Certificate paths in a world file are relative to the file.
        if let Some(dir) = path.parent() {
            if let Some(p) = &world.server.management.webhook_ca_file {
                if p.is_relative() {
                    world.server.management.webhook_ca_file = Some(dir.join(p));
                }
            }
            for app in &mut world.applications {
                for cert in &mut app.certificates {
                    if let Some(p) = &cert.certificate_pem_path {
                        if p.is_relative() {
                            cert.certificate_pem_path = Some(dir.join(p));
                        }
                    }
                }
            }
        }
        // Validated after the paths are resolved (the webhook CA file is read).
        world.validate(&origin)?;
        Ok(world)
    }

    fn parse_toml(text: &str, origin: &str) -> Result<World, WorldError> {
        toml::from_str(text).map_err(|e| WorldError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })
    }

    pub fn from_toml_str(text: &str, origin: &str) -> Result<World, WorldError> {
        let world = World::parse_toml(text, origin)?;
        world.validate(origin)?;
        Ok(world)
    }

    /// Checks cross references and formats; the error names the offending key.
    pub fn validate(&self, origin: &str) -> Result<(), WorldError> {
        let invalid = |key: String, message: String| WorldError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };
        if self.tenants.is_empty() {
            return Err(invalid(
                "tenants".into(),
                "at least one tenant is required".into(),
            ));
        }
        self.server
            .management
            .validate()
            .map_err(|(key, message)| invalid(format!("server.management.{key}"), message))?;
        let mut names = HashSet::new();
        let mut tenant_ids = HashSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            if t.id.is_nil() {
                return Err(invalid(
                    format!("tenants[{i}].id"),
                    "must not be the empty GUID".into(),
                ));
            }
            if !tenant_ids.insert(t.id) {
                return Err(invalid(
                    format!("tenants[{i}].id"),
                    format!("duplicate tenant id {}", t.id),
                ));
            }
            for (j, d) in std::iter::once(&t.domain)
                .chain(&t.extra_domains)
                .enumerate()
            {
                let key = if j == 0 {
                    format!("tenants[{i}].domain")
                } else {
                    format!("tenants[{i}].extra_domains[{}]", j - 1)
                };
                if !is_dns_name(d) {
                    return Err(invalid(key, format!("'{d}' is not a DNS name")));
                }
                if !names.insert(d.to_ascii_lowercase()) {
                    return Err(invalid(key, format!("domain '{d}' is used twice")));
                }
            }
            let mut upns = HashSet::new();
            for (j, u) in t.users.iter().enumerate() {
                let key = format!("tenants[{i}].users[{j}].user_principal_name");
                let Some((_, domain)) = u.user_principal_name.split_once('@') else {
                    return Err(invalid(key, "must look like name@domain".into()));
                };
                if !is_dns_name(domain) {
                    return Err(invalid(key, format!("'{domain}' is not a DNS name")));
                }
                if !upns.insert(u.user_principal_name.to_ascii_lowercase()) {
                    return Err(invalid(key, "duplicate user principal name".into()));
                }
            }
            for (j, sp) in t.service_principals.iter().enumerate() {
                if !self.applications.iter().any(|a| a.client_id == sp.app_id) {
                    return Err(invalid(
                        format!("tenants[{i}].service_principals[{j}].app_id"),
                        format!("no application with client_id {}", sp.app_id),
                    ));
                }
                for (res, roles) in &sp.app_role_grants {
                    let key =
                        format!("tenants[{i}].service_principals[{j}].app_role_grants.\"{res}\"");
                    self.check_roles(res, roles).map_err(|m| invalid(key, m))?;
                }
                for (res, scopes) in &sp.delegated_grants {
                    let key =
                        format!("tenants[{i}].service_principals[{j}].delegated_grants.\"{res}\"");
                    self.check_scopes(res, scopes)
                        .map_err(|m| invalid(key, m))?;
                }
            }
            for (j, uc) in t.user_consents.iter().enumerate() {
                if !t.users.iter().any(|u| u.object_id == uc.user) {
                    return Err(invalid(
                        format!("tenants[{i}].user_consents[{j}].user"),
                        format!("no user with object_id {} in this tenant", uc.user),
                    ));
                }
                if self.application(&uc.app_id).is_none() {
                    return Err(invalid(
                        format!("tenants[{i}].user_consents[{j}].app_id"),
                        format!("no application with client_id {}", uc.app_id),
                    ));
                }
                for (res, scopes) in &uc.scopes {
                    let key = format!("tenants[{i}].user_consents[{j}].scopes.\"{res}\"");
                    self.check_scopes(res, scopes)
                        .map_err(|m| invalid(key, m))?;
                }
            }
        }
        let mut resource_ids = HashSet::new();
        for (i, r) in self.resources.iter().enumerate() {
            if !r.app_id_uri.contains(':') {
                return Err(invalid(
                    format!("resources[{i}].app_id_uri"),
                    "must be a URI".into(),
                ));
            }
            if r.access_token_version != 1 && r.access_token_version != 2 {
                return Err(invalid(
                    format!("resources[{i}].access_token_version"),
                    "must be 1 or 2".into(),
                ));
            }
            if !resource_ids.insert(r.app_id) {
                return Err(invalid(
                    format!("resources[{i}].app_id"),
                    "duplicate app_id".into(),
                ));
            }
        }
        let mut client_ids = HashSet::new();
        for (i, a) in self.applications.iter().enumerate() {
            if !client_ids.insert(a.client_id) {
                return Err(invalid(
                    format!("applications[{i}].client_id"),
                    "duplicate client_id".into(),
                ));
            }
            if self.tenant(&a.home_tenant).is_none() {
                return Err(invalid(
                    format!("applications[{i}].home_tenant"),
                    format!("no tenant '{}' in this world", a.home_tenant),
                ));
            }
            for (j, url) in a.reply_urls.iter().enumerate() {
                let absolute = url.split_once(':').is_some_and(|(scheme, rest)| {
                    !rest.is_empty()
                        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                        && scheme
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                });
                if !absolute {
                    return Err(invalid(
                        format!("applications[{i}].reply_urls[{j}]"),
                        "must be an absolute URI".into(),
                    ));
                }
            }
            for (j, s) in a.secrets.iter().enumerate() {
                if s.value.is_empty() {
                    return Err(invalid(
                        format!("applications[{i}].secrets[{j}].value"),
                        "must not be empty".into(),
                    ));
                }
            }
            let mut cert_names = HashSet::new();
            for (j, c) in a.certificates.iter().enumerate() {
                let ok = !c.name.is_empty()
                    && c.name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
                if !ok {
                    return Err(invalid(
                        format!("applications[{i}].certificates[{j}].name"),
                        "use letters, digits, '-' and '_' only".into(),
                    ));
                }
                if !cert_names.insert(&c.name) {
                    return Err(invalid(
                        format!("applications[{i}].certificates[{j}].name"),
                        "duplicate name".into(),
                    ));
                }
                if c.certificate_pem.is_some() && c.certificate_pem_path.is_some() {
                    return Err(invalid(
                        format!("applications[{i}].certificates[{j}]"),
                        "give certificate_pem or certificate_pem_path, not both".into(),
                    ));
                }
            }
            for (j, rra) in a.required_resource_access.iter().enumerate() {
                let key = format!("applications[{i}].required_resource_access[{j}]");
                self.check_roles(&rra.resource, &rra.app_roles)
                    .and_then(|()| self.check_scopes(&rra.resource, &rra.scopes))
                    .map_err(|m| invalid(key, m))?;
            }
        }
        for (i, mi) in self.managed_identities.iter().enumerate() {
            if self.tenant(&mi.tenant).is_none() {
                return Err(invalid(
                    format!("managed_identities[{i}].tenant"),
                    format!("no tenant '{}'", mi.tenant),
                ));
            }
            for (res, roles) in &mi.app_role_grants {
                let key = format!("managed_identities[{i}].app_role_grants.\"{res}\"");
                self.check_roles(res, roles).map_err(|m| invalid(key, m))?;
            }
        }
        for (i, acs) in self.acs.iter().enumerate() {
            if self.tenant(&acs.tenant).is_none() {
                return Err(invalid(
                    format!("acs[{i}].tenant"),
                    format!("no tenant '{}'", acs.tenant),
                ));
            }
            if !is_dns_name(&acs.host) {
                return Err(invalid(
                    format!("acs[{i}].host"),
                    "must be a DNS name".into(),
                ));
            }
            for (field, key) in [
                ("primary_key", &acs.primary_key),
                ("secondary_key", &acs.secondary_key),
            ] {
                use base64::Engine;
                if base64::engine::general_purpose::STANDARD
                    .decode(key)
                    .is_err()
                {
                    return Err(invalid(
                        format!("acs[{i}].{field}"),
                        "must be base64".into(),
                    ));
                }
            }
        }
        self.teams
            .validate(self)
            .map_err(|(key, message)| invalid(key, message))?;
        for (i, rule) in self.faults.iter().enumerate() {
            crate::faults::FaultSpec::from_json(rule.clone(), &crate::services::known_error)
                .map_err(|e| invalid(format!("faults[{i}].{}", e.field), e.message))?;
        }
        Ok(())
    }

    fn check_scopes(&self, resource: &str, scopes: &[String]) -> Result<(), String> {
        let Some(res) = self.resource(resource) else {
            return Err(format!("no resource '{resource}' in this world"));
        };
        match scopes.iter().find(|s| !res.scopes.contains(s)) {
            Some(s) => Err(format!("resource '{}' has no scope '{s}'", res.app_id_uri)),
            None => Ok(()),
        }
    }

    fn check_roles(&self, resource: &str, roles: &[String]) -> Result<(), String> {
        let Some(res) = self.resource(resource) else {
            return Err(format!("no resource '{resource}' in this world"));
        };
        for role in roles {
            if !res.app_roles.iter().any(|r| &r.value == role) {
                return Err(format!(
                    "resource '{}' has no app role '{role}'",
                    res.app_id_uri
                ));
            }
        }
        Ok(())
    }

    /// Finds a tenant by GUID or by any of its domains (case-insensitive).
    pub fn tenant(&self, key: &str) -> Option<&Tenant> {
        if let Ok(id) = Uuid::parse_str(key) {
            return self.tenants.iter().find(|t| t.id == id);
        }
        self.tenants.iter().find(|t| {
            t.domain.eq_ignore_ascii_case(key)
                || t.extra_domains.iter().any(|d| d.eq_ignore_ascii_case(key))
        })
    }

    /// Finds a resource by App ID URI (trailing slashes ignored, case-insensitive) or app id.
    pub fn resource(&self, key: &str) -> Option<&Resource> {
        if let Ok(id) = Uuid::parse_str(key) {
            return self.resources.iter().find(|r| r.app_id == id);
        }
        let wanted = key.trim_end_matches('/');
        self.resources.iter().find(|r| {
            std::iter::once(&r.app_id_uri)
                .chain(&r.extra_app_id_uris)
                .any(|uri| uri.trim_end_matches('/').eq_ignore_ascii_case(wanted))
        })
    }

    /// The grants of a `resource → names` map that name `resource` (by any of its URIs or its
    /// app id), in order and without repeats.
    pub fn grants_on(
        &self,
        grants: &BTreeMap<String, Vec<String>>,
        resource: &Uuid,
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (key, names) in grants {
            if self.resource(key).is_some_and(|r| &r.app_id == resource) {
                for n in names {
                    if !out.contains(n) {
                        out.push(n.clone());
                    }
                }
            }
        }
        out
    }

    pub fn application(&self, client_id: &Uuid) -> Option<&Application> {
        self.applications.iter().find(|a| &a.client_id == client_id)
    }
}

impl ServicePrincipal {
    /// The object id, derived deterministically from tenant and app when not configured.
    pub fn object_id_in(&self, tenant: &Uuid) -> Uuid {
        self.object_id
            .unwrap_or_else(|| derived_object_id(tenant, &self.app_id))
    }
}

/// A stable object id for a service principal created by consent.
pub fn derived_object_id(tenant: &Uuid, app: &Uuid) -> Uuid {
    let mut name = Vec::with_capacity(32);
    name.extend_from_slice(tenant.as_bytes());
    name.extend_from_slice(app.as_bytes());
    Uuid::new_v5(&Uuid::NAMESPACE_OID, &name)
}

/// A DNS name as Entra accepts for a tenant domain: labels of letters, digits and hyphens.
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_world_is_valid_and_tells_the_seed_story() {
        let w = World::default_world().expect("default world");
        let contoso = w.tenant("contoso.onmicrosoft.com").expect("contoso");
        let fabrikam = w.tenant("fabrikam.onmicrosoft.com").expect("fabrikam");
        let collector = w
            .applications
            .iter()
            .find(|a| a.multi_tenant && !a.certificates.is_empty() && !a.secrets.is_empty())
            .expect("multi-tenant collector with certificate and secret");
        for t in [contoso, fabrikam] {
            let sp = t
                .service_principals
                .iter()
                .find(|sp| sp.app_id == collector.client_id)
                .expect("consented");
            assert!(sp.app_role_grants["https://manage.office.com"]
                .contains(&"ActivityFeed.Read".to_string()));
        }
        assert!(contoso
            .users
            .iter()
            .any(|u| u.kind == UserKind::ResourceAccount));
        assert_eq!(w.acs.len(), 1);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = World::from_toml_str("[[tenants]]\nid = \"x\"\nbogus = 1\n", "t").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("tenants") || text.contains("bogus"), "{text}");
    }

    #[test]
    fn bad_cross_reference_names_the_key() {
        let mut w = World::default_world().expect("default");
        w.applications[0].home_tenant = "nowhere.example".into();
        let err = w.validate("t").unwrap_err().to_string();
        assert!(err.contains("applications[0].home_tenant"), "{err}");
    }
}
