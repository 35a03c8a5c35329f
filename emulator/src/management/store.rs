//! Subscriptions, per tenant and content type, and the outgoing webhook client. Audit content
//! itself is not stored: the generator derives every blob from (seed, tenant, content type,
//! blob index) on demand, so memory does not grow with the feed.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use time::OffsetDateTime;
use uuid::Uuid;

use super::delivery::{Delivery, Sender};
use super::wire::{ContentType, Webhook};

/// A subscription's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Enabled,
    Disabled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Enabled => "enabled",
            Status::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub status: Status,
    /// When the subscription was last (re-)enabled: only blobs created from then on are
    /// listed and served ("on restart only new content from that point on").
    pub enabled_since: OffsetDateTime,
    pub webhook: Option<Webhook>,
}

/// The Management API's mutable state, reachable from [`crate::Core`].
#[derive(Default)]
pub struct Store {
    subscriptions: Mutex<BTreeMap<(Uuid, ContentType), Subscription>>,
    /// Notification delivery per subscription: what is announced, pending retries, history.
    deliveries: Mutex<BTreeMap<(Uuid, ContentType), Delivery>>,
    /// Built on first use (it reads the CA files the world names); an error is kept.
    webhook_client: OnceLock<Result<reqwest::Client, String>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("management::Store")
            .field("subscriptions", &self.lock().len())
            .finish()
    }
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(Uuid, ContentType), Subscription>> {
        // Every change is a single insert: a poisoned lock cannot leave a half-written entry.
        self.subscriptions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, tenant: Uuid, ct: ContentType) -> Option<Subscription> {
        self.lock().get(&(tenant, ct)).cloned()
    }

    /// Runs `f` on the tenant's subscription for `ct` under the lock (check and change in one
    /// step, so two concurrent requests cannot both see "not enabled").
    pub fn update<R>(
        &self,
        tenant: Uuid,
        ct: ContentType,
        f: impl FnOnce(Option<&mut Subscription>) -> R,
    ) -> R {
        f(self.lock().get_mut(&(tenant, ct)))
    }

    /// Enables the subscription with `webhook` (creating it, or re-enabling a disabled one
    /// from `now` on; an enabled one keeps its start and only changes its webhook).
    pub fn enable(
        &self,
        tenant: Uuid,
        ct: ContentType,
        webhook: Option<Webhook>,
        now: OffsetDateTime,
    ) {
        let mut subs = self.lock();
        let sub = subs.entry((tenant, ct)).or_insert(Subscription {
            status: Status::Disabled,
            enabled_since: now,
            webhook: None,
        });
        if sub.status == Status::Disabled {
            sub.status = Status::Enabled;
            sub.enabled_since = now;
        }
        sub.webhook = webhook;
    }

    /// The tenant's subscriptions, in content-type order.
    pub fn list(&self, tenant: Uuid) -> Vec<(ContentType, Subscription)> {
        self.lock()
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .map(|((_, ct), s)| (*ct, s.clone()))
            .collect()
    }

    /// Forgets every subscription and delivery (`/_emulator/reset`).
    pub fn clear(&self) {
        self.lock().clear();
        self.deliveries().clear();
    }

    pub(crate) fn deliveries(&self) -> MutexGuard<'_, BTreeMap<(Uuid, ContentType), Delivery>> {
        // Every change is a small in-place update: a poisoned lock leaves consistent state.
        self.deliveries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a successful `/start`: announce blobs created from `now` on (pending retries are
    /// dropped, the history is kept).
    pub fn arm_delivery(&self, tenant: Uuid, ct: ContentType, sender: Sender, now: OffsetDateTime) {
        self.deliveries()
            .entry((tenant, ct))
            .or_default()
            .arm(sender, now);
    }

    /// After `/stop`: nothing more goes out (a delivery in flight is not recorded).
    pub fn disarm_delivery(&self, tenant: Uuid, ct: ContentType) {
        if let Some(d) = self.deliveries().get_mut(&(tenant, ct)) {
            d.disarm();
        }
    }

    /// The enabled subscriptions whose webhook is active at `now` (cheap when there is none).
    pub fn active_webhooks(&self, now: OffsetDateTime) -> Vec<(Uuid, ContentType, Webhook)> {
        self.lock()
            .iter()
            .filter(|(_, s)| s.status == Status::Enabled)
            .filter_map(|((t, ct), s)| {
                let h = s.webhook.as_ref().filter(|h| h.active(now))?;
                Some((*t, *ct, h.clone()))
            })
            .collect()
    }

    /// The outgoing HTTPS client for webhook validation, built once with `build`.
    pub fn webhook_client(
        &self,
        build: impl FnOnce() -> Result<reqwest::Client, String>,
    ) -> Result<reqwest::Client, String> {
        self.webhook_client.get_or_init(build).clone()
    }
}
