//! What a run talks to: the endpoint, the server's pid, and the credentials, taken from the
//! command line or else from the emulator's ready file.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use serde_json::Value;

use crate::args::{RunArgs, Scenario};
use crate::client::Endpoint;

/// Everything a scenario needs to know about its target.
#[derive(Debug, Clone)]
pub struct Plan {
    pub endpoint: Endpoint,
    pub pid: Option<u32>,
    /// The `{tenant}` URL segment of token requests.
    pub tenant: String,
    /// The tenant's GUID (Management API URLs), when known.
    pub tenant_id: Option<String>,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub certificate_pem: Option<PathBuf>,
    pub private_key_pem: Option<PathBuf>,
    pub token_path: String,
    pub scope: String,
    pub acs_connection_string: Option<String>,
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn p(v: &Value, key: &str) -> Option<PathBuf> {
    s(v, key).map(PathBuf::from)
}

/// Resolves the plan of a run. The ready file is read as plain JSON so that fields other
/// branches add never break the driver.
pub fn resolve(args: &RunArgs) -> anyhow::Result<Plan> {
    let ready: Value = match &args.ready_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the ready file {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?
        }
        None => Value::Null,
    };
    let base = args
        .target
        .clone()
        .or_else(|| s(&ready, "https_url"))
        .ok_or_else(|| anyhow!("give --target or --ready-file"))?;
    let ca = args.ca.clone().or_else(|| p(&ready, "ca_cert_path"));
    let endpoint = Endpoint::with_ca_file(&base, ca.as_deref())?;
    let pid = args
        .pid
        .or_else(|| ready.get("pid").and_then(Value::as_u64).map(|p| p as u32));

    let tenants = ready
        .get("tenants")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tenant_json = match &args.tenant {
        Some(t) => tenants
            .iter()
            .find(|x| {
                s(x, "id").is_some_and(|id| id.eq_ignore_ascii_case(t))
                    || s(x, "domain").is_some_and(|d| d.eq_ignore_ascii_case(t))
            })
            .cloned(),
        None => tenants.first().cloned(),
    }
    .unwrap_or(Value::Null);
    let tenant = args
        .tenant
        .clone()
        .or_else(|| s(&tenant_json, "domain"))
        .unwrap_or_else(|| "common".to_string());
    let tenant_id = s(&tenant_json, "id");

    let needs_cert = args.scenario == Scenario::TokenCertificate;
    let apps = tenant_json
        .get("applications")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let app = match &args.client_id {
        Some(id) => apps
            .iter()
            .find(|a| s(a, "client_id").is_some_and(|c| c.eq_ignore_ascii_case(id)))
            .cloned(),
        None => apps
            .iter()
            .find(|a| {
                s(a, "client_secret").is_some()
                    && (!needs_cert || s(a, "private_key_pem_path").is_some())
            })
            .cloned(),
    }
    .unwrap_or(Value::Null);
    let client_id = args
        .client_id
        .clone()
        .or_else(|| s(&app, "client_id"))
        .unwrap_or_else(|| "m365-load".to_string());
    let acs_connection_string = args.acs_connection_string.clone().or_else(|| {
        ready
            .get("acs")
            .and_then(Value::as_array)
            .and_then(|list| list.first())
            .and_then(|a| s(a, "connection_string"))
    });
    Ok(Plan {
        endpoint,
        pid,
        token_path: args
            .token_path
            .clone()
            .unwrap_or_else(|| format!("/{tenant}/oauth2/v2.0/token")),
        tenant,
        tenant_id,
        client_id,
        client_secret: args
            .client_secret
            .clone()
            .or_else(|| s(&app, "client_secret")),
        certificate_pem: args
            .certificate
            .clone()
            .or_else(|| p(&app, "certificate_pem_path")),
        private_key_pem: args
            .private_key
            .clone()
            .or_else(|| p(&app, "private_key_pem_path")),
        scope: args.scope.clone(),
        acs_connection_string,
    })
}
