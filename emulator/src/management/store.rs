//! Subscriptions, per tenant and content type, and the outgoing webhook client. Audit content
//! itself is not stored: the generator derives every blob from (seed, tenant, content type,
//! blob index) on demand, so memory does not grow with the feed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::world::ManagementSection;

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
    /// The last `/start` that was accepted (the cooldown counts from it).
    pub last_start: OffsetDateTime,
}

/// Records appended through the admin API: per feed, per blob index.
type Injected = BTreeMap<(Uuid, ContentType), BTreeMap<i64, Vec<Value>>>;

/// A throttling pool: a publisher's own, or the tenant's shared one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pool {
    Tenant(Uuid),
    Publisher(Uuid),
}

/// The Management API's mutable state, reachable from [`crate::Core`].
#[derive(Default)]
pub struct Store {
    subscriptions: Mutex<BTreeMap<(Uuid, ContentType), Subscription>>,
    /// Notification delivery per subscription: what is announced, pending retries, history.
    deliveries: Mutex<BTreeMap<(Uuid, ContentType), Delivery>>,
    /// Built on first use (it reads the CA files the world names); an error is kept.
    webhook_client: OnceLock<Result<reqwest::Client, String>>,
    /// Knobs changed at run time (the world's section with the patches applied).
    settings: Mutex<Option<ManagementSection>>,
    /// Records appended through the admin API, by blob index.
    injected: Mutex<Injected>,
    /// Requests counted per pool in the current minute (minute number, count).
    quotas: Mutex<HashMap<Pool, (i64, u32)>>,
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
            last_start: now,
        });
        if sub.status == Status::Disabled {
            sub.status = Status::Enabled;
            sub.enabled_since = now;
        }
        sub.webhook = webhook;
        sub.last_start = now;
    }

    /// The tenant's subscriptions, in content-type order.
    pub fn list(&self, tenant: Uuid) -> Vec<(ContentType, Subscription)> {
        self.lock()
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .map(|((_, ct), s)| (*ct, s.clone()))
            .collect()
    }

    /// Forgets every subscription, delivery, injected record, quota count and run-time knob
    /// (`/_emulator/reset`).
    pub fn clear(&self) {
        self.lock().clear();
        self.deliveries().clear();
        *self.settings_lock() = None;
        self.injected_lock().clear();
        self.quotas_lock().clear();
    }

    fn settings_lock(&self) -> MutexGuard<'_, Option<ManagementSection>> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn injected_lock(&self) -> MutexGuard<'_, Injected> {
        self.injected.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn quotas_lock(&self) -> MutexGuard<'_, HashMap<Pool, (i64, u32)>> {
        self.quotas.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The knobs in force: the run-time settings, else `world`'s.
    pub fn settings(&self, world: &ManagementSection) -> ManagementSection {
        self.settings_lock()
            .clone()
            .unwrap_or_else(|| world.clone())
    }

    /// Applies `patch` on top of the knobs in force (already validated by the caller).
    pub fn patch_settings(&self, world: &ManagementSection, patch: &ManagementSection) {
        let mut current = self.settings_lock();
        let base = current.clone().unwrap_or_else(|| world.clone());
        *current = Some(base.patched(patch));
    }

    /// Appends records to blob `index` of the tenant's feed for `ct`.
    pub fn inject(&self, tenant: Uuid, ct: ContentType, index: i64, records: Vec<Value>) {
        self.injected_lock()
            .entry((tenant, ct))
            .or_default()
            .entry(index)
            .or_default()
            .extend(records);
    }

    /// The records injected into blob `index`.
    pub fn injected(&self, tenant: Uuid, ct: ContentType, index: i64) -> Vec<Value> {
        self.injected_lock()
            .get(&(tenant, ct))
            .and_then(|m| m.get(&index))
            .cloned()
            .unwrap_or_default()
    }

    /// Every injected record of a tenant: (content type, blob index, records).
    pub fn injected_for(&self, tenant: Uuid) -> Vec<(ContentType, i64, Vec<Value>)> {
        self.injected_lock()
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .flat_map(|((_, ct), blobs)| blobs.iter().map(|(i, r)| (*ct, *i, r.clone())))
            .collect()
    }

    /// Counts one request against `pool` in the minute of `now`; `Err(seconds until the next
    /// minute)` when the pool has used its `limit` (0 = unlimited).
    pub fn take_quota(&self, pool: Pool, limit: u32, now: OffsetDateTime) -> Result<(), u64> {
        if limit == 0 {
            return Ok(());
        }
        let minute = now.unix_timestamp().div_euclid(60);
        let mut quotas = self.quotas_lock();
        if quotas.len() > 10_000 {
            // Many publisher ids: forget the pools of past minutes (memory stays bounded).
            quotas.retain(|_, (m, _)| *m == minute);
        }
        let entry = quotas.entry(pool).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= limit {
            return Err((60 - now.unix_timestamp().rem_euclid(60)) as u64);
        }
        entry.1 += 1;
        Ok(())
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
