//! Graph's mutable state on [`Core`]: application access policies, online meetings, chats and
//! their messages, and the runtime knobs. Seeded lazily from the world (so `Core::reset` only
//! has to drop it) and guarded by one mutex that handlers never hold across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::config::ChatType;
use super::errors::PolicyErrorForm;
use super::policies::{normalize_name, PolicyStates, TenantPolicies, TenantPolicyState};
use crate::state::Core;
use crate::world::{Tenant, World};

/// A stored online meeting: the lookup keys and the resource as Graph returns it.
#[derive(Debug, Clone)]
pub struct Meeting {
    pub tenant: Uuid,
    pub organizer: Uuid,
    pub id: String,
    pub external_id: Option<String>,
    pub join_web_url: String,
    pub join_meeting_id: String,
    pub video_teleconference_id: String,
    pub resource: Value,
}

/// A chat and its members.
#[derive(Debug, Clone)]
pub struct Chat {
    pub tenant: Uuid,
    pub id: String,
    pub chat_type: ChatType,
    pub topic: Option<String>,
    pub members: Vec<Uuid>,
    pub created: OffsetDateTime,
    /// Oldest first.
    pub messages: Vec<Value>,
    /// The id (epoch milliseconds) of the newest message, to keep ids increasing.
    pub last_message_id: i64,
}

#[derive(Debug)]
pub struct GraphData {
    pub propagation_seconds: u64,
    pub error_form: PolicyErrorForm,
    pub policies: PolicyStates,
    pub meetings: Vec<Meeting>,
    /// Lower-cased chat id → chat.
    pub chats: BTreeMap<String, Chat>,
}

#[derive(Debug, Default)]
pub struct GraphState {
    data: Mutex<Option<GraphData>>,
}

/// The lock, with the data seeded.
pub struct GraphGuard<'a>(MutexGuard<'a, Option<GraphData>>);

impl std::ops::Deref for GraphGuard<'_> {
    type Target = GraphData;
    fn deref(&self) -> &GraphData {
        // Seeded by `GraphState::lock` before the guard is handed out.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("graph state seeded"))
    }
}

impl std::ops::DerefMut for GraphGuard<'_> {
    fn deref_mut(&mut self) -> &mut GraphData {
        self.0
            .as_mut()
            .unwrap_or_else(|| unreachable!("graph state seeded"))
    }
}

impl GraphState {
    /// Locks the state, seeding it from the initial world on first use after start or reset.
    pub fn lock(&self, core: &Core) -> GraphGuard<'_> {
        let mut g = self.data.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(GraphData::from_world(&core.initial_directory().world));
        }
        GraphGuard(g)
    }

    /// Drops everything (the next `lock` seeds again from the world).
    pub fn clear(&self) {
        *self.data.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A user of `tenant` by UPN or object id (case-insensitive).
pub fn find_user<'t>(tenant: &'t Tenant, key: &str) -> Option<&'t crate::world::User> {
    tenant.users.iter().find(|u| {
        u.user_principal_name.eq_ignore_ascii_case(key)
            || u.object_id.to_string().eq_ignore_ascii_case(key)
    })
}

impl GraphData {
    pub fn from_world(world: &World) -> GraphData {
        let section = &world.teams;
        let mut configured: HashMap<Uuid, TenantPolicies> = HashMap::new();
        for p in &section.application_access_policies {
            let (Some(t), Some(name)) = (world.tenant(&p.tenant), normalize_name(&p.identity))
            else {
                continue;
            };
            let key = name.to_ascii_lowercase();
            let tp = configured.entry(t.id).or_default();
            tp.policies.insert(
                key.clone(),
                super::policies::Policy {
                    name,
                    app_ids: p.app_ids.clone(),
                    description: p.description.clone().unwrap_or_default(),
                },
            );
            for u in p.granted_to.iter().filter_map(|u| find_user(t, u)) {
                tp.users.insert(u.object_id, key.clone());
            }
            if p.global {
                tp.global = Some(key.clone());
            }
        }
        let policies = configured
            .into_iter()
            .map(|(t, p)| (t, TenantPolicyState::seeded(p)))
            .collect();
        let mut chats = BTreeMap::new();
        for c in &section.chats {
            let Some(t) = world.tenant(&c.tenant) else {
                continue;
            };
            let members = c
                .members
                .iter()
                .filter_map(|m| find_user(t, m).map(|u| u.object_id))
                .collect();
            chats.insert(
                c.id.to_ascii_lowercase(),
                Chat {
                    tenant: t.id,
                    id: c.id.clone(),
                    chat_type: c.chat_type,
                    topic: c.topic.clone(),
                    members,
                    created: OffsetDateTime::UNIX_EPOCH,
                    messages: Vec::new(),
                    last_message_id: 0,
                },
            );
        }
        GraphData {
            propagation_seconds: section.policy_propagation_seconds,
            error_form: section.access_policy_error,
            policies,
            meetings: Vec::new(),
            chats,
        }
    }

    /// The tenant's policy state (created empty on first change).
    pub fn tenant_policies(&mut self, tenant: Uuid) -> &mut TenantPolicyState {
        self.policies
            .entry(tenant)
            .or_insert_with(|| TenantPolicyState::seeded(TenantPolicies::default()))
    }

    pub fn chat(&self, id: &str) -> Option<&Chat> {
        self.chats.get(&id.to_ascii_lowercase())
    }

    pub fn chat_mut(&mut self, id: &str) -> Option<&mut Chat> {
        self.chats.get_mut(&id.to_ascii_lowercase())
    }
}
