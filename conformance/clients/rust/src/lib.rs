//! A careful Microsoft 365 daemon client, written the way the conformance suite says clients
//! should behave. It is the suite's reference client and a small library of its own:
//!
//! - [`auth::TokenClient`]: app-only tokens from Entra ID (v2 endpoint) with a client secret
//!   or a certificate (RS256 client assertion with `x5t`, 10-minute lifetime, exact `aud`),
//!   cached and reused until five minutes before they expire.
//! - [`retry::send`]: one request with bounded retries: `Retry-After` honoured on 429 and 503,
//!   exponential backoff on other 5xx and on the Management API's AF50000, no retry on 4xx.
//! - [`management::Drainer`]: the Office 365 Management Activity API without losing records:
//!   starts missing subscriptions (AF20022), tolerates AF20024, windows of at most 24 hours
//!   on `contentCreated` that overlap the previous poll, `NextPageUri` followed to the end,
//!   each blob fetched once, records de-duplicated by `Id`; subscriptions with a webhook.
//! - [`webhook::serve`]: the webhook receiver: validation answered 200, notifications trusted
//!   only with the subscription's `Webhook-AuthID`, answered at once and fetched afterwards.
//! - [`graph::Graph`]: Microsoft Graph online meetings (createOrGet by `externalId`) and chat
//!   messages (every page, by `@odata.nextLink` as given), errors with Graph's `error.code`;
//!   delegated tokens for a Teams user by the password grant ([`auth::Credential::Password`]).
//! - [`acs::AcsClient`]: Azure Communication Services with HMAC-SHA256 (every attempt signed
//!   afresh over the exact request target and body) or an Entra token: identities, tokens,
//!   and Teams Phone extensibility assignments (201 created vs 200 replaced, 404 = absent).

pub mod acs;
pub mod auth;
pub mod graph;
pub mod management;
pub mod retry;
pub mod webhook;

/// What can go wrong, with the service's own error code when there is one.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{service} answered {status}: {code}: {message}")]
    Service {
        service: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// The service error code (`AADSTS7000215`, `AF20023`, …), if the service gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}
