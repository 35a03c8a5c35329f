//! The `[teams]` section of the world file: Graph chats, initial application access policies,
//! the policy propagation delay, the 403 text, and Skype for Business trusted endpoints.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::errors::PolicyErrorForm;
use crate::world::World;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TeamsSection {
    /// Seconds before a policy change takes effect (the real service: "up to 30 minutes").
    #[serde(default)]
    pub policy_propagation_seconds: u64,
    /// `current` ("No Application Access Policy found for this app") or `legacy`.
    #[serde(default)]
    pub access_policy_error: PolicyErrorForm,
    #[serde(default)]
    pub chats: Vec<ChatDef>,
    #[serde(default)]
    pub application_access_policies: Vec<PolicyDef>,
    #[serde(default)]
    pub sfb_trusted_endpoints: Vec<TrustedEndpointDef>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ChatType {
    OneOnOne,
    #[default]
    Group,
    Meeting,
}

impl ChatType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatType::OneOnOne => "oneOnOne",
            ChatType::Group => "group",
            ChatType::Meeting => "meeting",
        }
    }
}

/// A chat that exists from the start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChatDef {
    /// e.g. `19:…@thread.v2`.
    pub id: String,
    pub tenant: String,
    #[serde(default)]
    pub chat_type: ChatType,
    #[serde(default)]
    pub topic: Option<String>,
    /// User principal names or object ids.
    pub members: Vec<String>,
}

/// An application access policy present from the start (as if created by
/// `New-CsApplicationAccessPolicy` and granted by `Grant-CsApplicationAccessPolicy`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyDef {
    pub tenant: String,
    /// The policy name (without `Tag:`).
    pub identity: String,
    #[serde(default)]
    pub app_ids: Vec<Uuid>,
    #[serde(default)]
    pub description: Option<String>,
    /// Users (UPN or object id) the policy is granted to.
    #[serde(default)]
    pub granted_to: Vec<String>,
    /// Granted tenant-wide (`-Global`).
    #[serde(default)]
    pub global: bool,
}

/// A Skype for Business trusted application endpoint (`New-CsTrustedApplicationEndpoint`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrustedEndpointDef {
    pub tenant: String,
    pub app_id: Uuid,
    /// `sip:helpdesk@contoso.com`.
    pub endpoint_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

impl TeamsSection {
    /// Checks references into the rest of the world; errors name the key.
    pub fn validate(&self, world: &World) -> Result<(), (String, String)> {
        let user_in = |tenant: &str, key: &str| {
            world.tenant(tenant).is_some_and(|t| {
                t.users.iter().any(|u| {
                    u.user_principal_name.eq_ignore_ascii_case(key)
                        || u.object_id.to_string().eq_ignore_ascii_case(key)
                })
            })
        };
        let mut ids = std::collections::HashSet::new();
        for (i, c) in self.chats.iter().enumerate() {
            let key = |f: &str| format!("teams.chats[{i}].{f}");
            if c.id.trim().is_empty() || c.id.len() > 400 || c.id.contains('/') {
                return Err((key("id"), "must be a non-empty chat id without '/'".into()));
            }
            if !ids.insert(c.id.to_ascii_lowercase()) {
                return Err((key("id"), format!("duplicate chat id '{}'", c.id)));
            }
            if world.tenant(&c.tenant).is_none() {
                return Err((key("tenant"), format!("no tenant '{}'", c.tenant)));
            }
            if let Some(m) = c.members.iter().find(|m| !user_in(&c.tenant, m)) {
                return Err((
                    key("members"),
                    format!("no user '{m}' in tenant '{}'", c.tenant),
                ));
            }
            if c.chat_type == ChatType::OneOnOne && c.members.len() != 2 {
                return Err((
                    key("members"),
                    "a oneOnOne chat has exactly two members".into(),
                ));
            }
            if c.members.is_empty() {
                return Err((key("members"), "a chat needs at least one member".into()));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.application_access_policies.iter().enumerate() {
            let key = |f: &str| format!("teams.application_access_policies[{i}].{f}");
            let Some(t) = world.tenant(&p.tenant) else {
                return Err((key("tenant"), format!("no tenant '{}'", p.tenant)));
            };
            if super::policies::normalize_name(&p.identity).is_none() {
                return Err((key("identity"), "must be a policy name".into()));
            }
            if !names.insert((t.id, p.identity.to_ascii_lowercase())) {
                return Err((
                    key("identity"),
                    format!("duplicate policy '{}'", p.identity),
                ));
            }
            if let Some(u) = p.granted_to.iter().find(|u| !user_in(&p.tenant, u)) {
                return Err((
                    key("granted_to"),
                    format!("no user '{u}' in tenant '{}'", p.tenant),
                ));
            }
        }
        for (i, e) in self.sfb_trusted_endpoints.iter().enumerate() {
            let key = |f: &str| format!("teams.sfb_trusted_endpoints[{i}].{f}");
            if world.tenant(&e.tenant).is_none() {
                return Err((key("tenant"), format!("no tenant '{}'", e.tenant)));
            }
            if world.application(&e.app_id).is_none() {
                return Err((key("app_id"), format!("no application '{}'", e.app_id)));
            }
            if !e.endpoint_id.to_ascii_lowercase().starts_with("sip:")
                || !e.endpoint_id.contains('@')
            {
                return Err((
                    key("endpoint_id"),
                    "must be a SIP URI (sip:name@domain)".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_teams(extra: &str) -> Result<World, crate::world::WorldError> {
        let text = format!("{}\n{extra}", crate::world::DEFAULT_WORLD_TOML);
        World::from_toml_str(&text, "test")
    }

    #[test]
    fn the_default_world_has_chats_and_a_trusted_endpoint() {
        let w = World::default_world().expect("default world");
        assert_eq!(w.teams.chats.len(), 2);
        assert_eq!(
            w.teams.sfb_trusted_endpoints[0].endpoint_id,
            "sip:helpdesk@contoso.com"
        );
    }

    #[test]
    fn references_are_checked_and_errors_name_the_key() {
        let cases = [
            ("[[teams.chats]]\nid = \"19:x@thread.v2\"\ntenant = \"contoso.onmicrosoft.com\"\nmembers = [\"nobody@contoso.onmicrosoft.com\"]", "teams.chats[2].members"),
            ("[[teams.chats]]\nid = \"19:adele-megan_0b5c8d1e@unq.gbl.spaces\"\ntenant = \"contoso.onmicrosoft.com\"\nmembers = [\"adele@contoso.onmicrosoft.com\"]", "teams.chats[2].id"),
            ("[[teams.chats]]\nid = \"19:y@thread.v2\"\ntenant = \"contoso.onmicrosoft.com\"\nchat_type = \"oneOnOne\"\nmembers = [\"adele@contoso.onmicrosoft.com\"]", "teams.chats[2].members"),
            ("[[teams.application_access_policies]]\ntenant = \"nowhere\"\nidentity = \"P\"", "teams.application_access_policies[0].tenant"),
            ("[[teams.application_access_policies]]\ntenant = \"contoso.onmicrosoft.com\"\nidentity = \"a/b\"", "teams.application_access_policies[0].identity"),
            ("[[teams.sfb_trusted_endpoints]]\ntenant = \"contoso.onmicrosoft.com\"\napp_id = \"06336e1e-f137-4f2b-8f1d-05d79d2b72e2\"\nendpoint_id = \"helpdesk\"", "teams.sfb_trusted_endpoints[1].endpoint_id"),
        ];
        for (extra, key) in cases {
            let err = with_teams(extra).expect_err(extra).to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        let ok = with_teams("[[teams.application_access_policies]]\ntenant = \"contoso.onmicrosoft.com\"\nidentity = \"Test-policy\"\napp_ids = [\"06336e1e-f137-4f2b-8f1d-05d79d2b72e2\"]\ngranted_to = [\"adele@contoso.onmicrosoft.com\"]").expect("valid");
        let data = super::super::state::GraphData::from_world(&ok);
        let tenant = ok.tenants[0].id;
        let adele = ok.tenants[0].users[1].object_id;
        let app = Uuid::parse_str("06336e1e-f137-4f2b-8f1d-05d79d2b72e2").expect("uuid");
        let effective = data.policies[&tenant]
            .effective(time::OffsetDateTime::now_utc())
            .expect("effective");
        assert!(effective.allows(&adele, &app));
    }
}
