//! In-flight state of the user flows: pending authorize requests (sign-in and consent pages),
//! sign-in sessions, authorization codes and refresh tokens. All in memory; reset clears it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use base64::Engine;
use rand::RngCore;
use time::OffsetDateTime;
use uuid::Uuid;

/// How long an authorization code can be redeemed ("about 10 minutes").
pub const CODE_LIFETIME: time::Duration = time::Duration::minutes(10);
/// Refresh tokens expire after 90 days without use (AADSTS700082).
pub const REFRESH_INACTIVITY: time::Duration = time::Duration::days(90);
/// A sign-in or consent page left open longer than this must be started again.
pub const FLOW_LIFETIME: time::Duration = time::Duration::minutes(30);
/// Bound on in-memory entries of each kind; the oldest fall out first.
const MAX_ENTRIES: usize = 100_000;

/// An unguessable opaque value (codes, refresh tokens, flow ids, CSRF tokens).
pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Which authorize endpoint started the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    /// `/oauth2/authorize` (v1, `resource=`).
    AuthorizeV1,
    /// `/oauth2/v2.0/authorize` (v2, `scope=`).
    AuthorizeV2,
    /// `/v2.0/adminconsent`.
    AdminConsentV2,
    /// `/adminconsent` (legacy).
    AdminConsentLegacy,
    /// Sign-in for a device code (`/devicelogin`): no redirect, a page at the end.
    DeviceCode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

/// Delegated permissions asked for: resource App ID URI → scope names.
pub type ScopeSet = Vec<(String, Vec<String>)>;

/// A validated authorize request.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub kind: FlowKind,
    pub tenant_segment: String,
    pub client_id: Uuid,
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub prompt: Option<String>,
    pub login_hint: Option<String>,
    pub code_challenge: Option<(String, String)>,
    /// The scopes as the client wrote them (echoed back by admin consent).
    pub scope_text: String,
    /// OIDC scopes requested (`openid`, `profile`, `email`, `offline_access`).
    pub oidc: Vec<String>,
    pub scopes: ScopeSet,
    /// v1: the resource named at authorize.
    pub resource: Option<String>,
    pub client_info: bool,
    /// The device code this sign-in approves (device-code flow only).
    pub device_code: Option<String>,
}

impl AuthorizeRequest {
    /// Tenant-wide consent requested by the client (`prompt=admin_consent` or an admin-consent endpoint).
    pub fn wants_admin_consent(&self) -> bool {
        matches!(
            self.kind,
            FlowKind::AdminConsentV2 | FlowKind::AdminConsentLegacy
        ) || self.prompt.as_deref() == Some("admin_consent")
    }
}

/// A sign-in/consent page in progress.
#[derive(Debug, Clone)]
pub struct PendingFlow {
    pub request: AuthorizeRequest,
    pub csrf: String,
    /// Tenant id and user object id once signed in.
    pub user: Option<(Uuid, Uuid)>,
    pub created: OffsetDateTime,
}

/// A signed-in browser session (cookie).
#[derive(Debug, Clone)]
pub struct Session {
    pub tenant: Uuid,
    pub user: Uuid,
    pub created: OffsetDateTime,
}

/// An issued authorization code.
#[derive(Debug, Clone)]
pub struct CodeGrant {
    pub client_id: Uuid,
    pub redirect_uri: String,
    pub tenant: Uuid,
    pub user: Uuid,
    pub oidc: Vec<String>,
    pub scopes: ScopeSet,
    pub resource: Option<String>,
    pub code_challenge: Option<(String, String)>,
    pub nonce: Option<String>,
    pub issued: OffsetDateTime,
    pub redeemed: bool,
}

/// An issued refresh token: good for every resource the user consented to for the app.
#[derive(Debug, Clone)]
pub struct RefreshGrant {
    pub client_id: Uuid,
    pub tenant: Uuid,
    pub user: Uuid,
    pub oidc: Vec<String>,
    pub issued: OffsetDateTime,
    pub last_used: OffsetDateTime,
}

/// Where a device code stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceCodeState {
    Pending,
    /// Approved by this user (tenant id, user object id).
    Approved(Uuid, Uuid),
    Declined,
    /// Tokens were issued; the code cannot be used again.
    Redeemed,
}

/// A device code issued by `/devicecode`.
#[derive(Debug, Clone)]
pub struct DeviceCodeGrant {
    pub user_code: String,
    pub client_id: Uuid,
    pub tenant_segment: String,
    pub oidc: Vec<String>,
    pub scopes: ScopeSet,
    pub resource: Option<String>,
    pub issued: OffsetDateTime,
    pub last_poll: Option<OffsetDateTime>,
    pub state: DeviceCodeState,
}

/// Device codes live 15 minutes; clients poll every 5 seconds.
pub const DEVICE_CODE_LIFETIME: time::Duration = time::Duration::minutes(15);
pub const DEVICE_CODE_INTERVAL: time::Duration = time::Duration::seconds(5);

#[derive(Debug, Default)]
pub struct FlowStore {
    /// Keyed by device code.
    pub device_codes: Mutex<HashMap<String, DeviceCodeGrant>>,
    pub pending: Mutex<HashMap<String, PendingFlow>>,
    pub sessions: Mutex<HashMap<String, Session>>,
    pub codes: Mutex<HashMap<String, CodeGrant>>,
    pub refresh_tokens: Mutex<HashMap<String, RefreshGrant>>,
}

/// Locks a map, recovering from poisoning (the maps hold plain values).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Inserts, evicting an arbitrary old entry when the bound is reached.
pub fn insert_bounded<V>(map: &Mutex<HashMap<String, V>>, key: String, value: V) {
    let mut m = lock(map);
    if m.len() >= MAX_ENTRIES {
        if let Some(k) = m.keys().next().cloned() {
            m.remove(&k);
        }
    }
    m.insert(key, value);
}

impl FlowStore {
    pub fn clear(&self) {
        lock(&self.pending).clear();
        lock(&self.sessions).clear();
        lock(&self.codes).clear();
        lock(&self.refresh_tokens).clear();
        lock(&self.device_codes).clear();
    }
}
