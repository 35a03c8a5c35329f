//! `m365-emulator teams …`: the Teams PowerShell application-access-policy cmdlets as
//! subcommands that drive a running emulator's `/_emulator/teams/` admin routes.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use m365_emulator::settings::default_state_dir;
use m365_emulator::ReadyInfo;
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct TeamsArgs {
    /// Base URL of the running emulator [default: http_url of the default ready file].
    #[arg(long, global = true, value_name = "URL", env = "M365EMU_URL")]
    emulator: Option<String>,
    /// Ready file to read the URL (and CA) from [default: STATE_DIR/ready.json].
    #[arg(long, global = true, value_name = "FILE", env = "M365EMU_READY_FILE")]
    ready_file: Option<PathBuf>,
    /// Tenant (GUID or domain) [default: the world's first tenant].
    #[arg(long, global = true, value_name = "TENANT")]
    tenant: Option<String>,
    #[command(subcommand)]
    command: TeamsCommand,
}

#[derive(Subcommand, Debug)]
enum TeamsCommand {
    /// New-CsApplicationAccessPolicy: create a policy (its identity becomes Tag:<name>).
    NewApplicationAccessPolicy {
        /// The policy name.
        #[arg(long)]
        identity: String,
        /// Application (client) ids, comma-separated or repeated.
        #[arg(long, value_delimiter = ',')]
        app_ids: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Set-CsApplicationAccessPolicy: replace (--app-ids), add or remove app ids, or the description.
    SetApplicationAccessPolicy {
        #[arg(long)]
        identity: String,
        /// Replace the list (-AppIds "<id>", …).
        #[arg(long, value_delimiter = ',')]
        app_ids: Option<Vec<String>>,
        /// -AppIds @{Add="<id>"}.
        #[arg(long, value_delimiter = ',')]
        add_app_ids: Vec<String>,
        /// -AppIds @{Remove="<id>"}.
        #[arg(long, value_delimiter = ',')]
        remove_app_ids: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Get-CsApplicationAccessPolicy: one policy, or all without --identity.
    GetApplicationAccessPolicy {
        #[arg(long)]
        identity: Option<String>,
    },
    /// Remove-CsApplicationAccessPolicy.
    RemoveApplicationAccessPolicy {
        #[arg(long)]
        identity: String,
    },
    /// Grant-CsApplicationAccessPolicy: to a user (--identity) or tenant-wide (--global);
    /// without --policy-name (PowerShell's -PolicyName $null) it unassigns.
    GrantApplicationAccessPolicy {
        /// The policy name (without Tag:); omit to unassign.
        #[arg(long)]
        policy_name: Option<String>,
        /// The user (object id or UPN).
        #[arg(long, conflicts_with = "global", required_unless_present = "global")]
        identity: Option<String>,
        /// Grant to every user without a policy of their own.
        #[arg(long)]
        global: bool,
    },
    /// Show or change the propagation delay and the 403 text.
    Settings {
        /// Seconds before policy changes take effect (the real service: up to 1800).
        #[arg(long)]
        propagation_seconds: Option<u64>,
        /// "current" or "legacy".
        #[arg(long)]
        access_policy_error: Option<String>,
    },
}

struct Target {
    base: String,
    client: reqwest::Client,
}

fn ready_path(args: &TeamsArgs) -> PathBuf {
    args.ready_file
        .clone()
        .unwrap_or_else(|| default_state_dir().join("ready.json"))
}

fn target(args: &TeamsArgs) -> Result<Target> {
    let ready: Option<ReadyInfo> = std::fs::read_to_string(ready_path(args))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let base = match (&args.emulator, &ready) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(r)) => r.http_url.trim_end_matches('/').to_string(),
        (None, None) => bail!(
            "no running emulator: cannot read ready file {} (give --emulator URL)",
            ready_path(args).display()
        ),
    };
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30));
    if base.starts_with("https://") {
        if let Some(r) = &ready {
            let pem = std::fs::read(&r.ca_cert_path)
                .with_context(|| format!("cannot read the CA {}", r.ca_cert_path.display()))?;
            builder = builder.tls_certs_only([reqwest::Certificate::from_pem(&pem)?]);
        }
    }
    Ok(Target {
        base,
        client: builder.build()?,
    })
}

fn segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

pub fn run(args: TeamsArgs) -> Result<()> {
    let t = target(&args)?;
    let root = format!("{}/_emulator/teams", t.base);
    let mut tenant_q = String::new();
    if let Some(tn) = &args.tenant {
        tenant_q = format!("?tenant={}", segment(tn));
    }
    let (method, url, body) = match &args.command {
        TeamsCommand::NewApplicationAccessPolicy {
            identity,
            app_ids,
            description,
        } => (
            reqwest::Method::POST,
            format!("{root}/applicationAccessPolicies{tenant_q}"),
            Some(json!({"identity": identity, "appIds": app_ids, "description": description})),
        ),
        TeamsCommand::SetApplicationAccessPolicy {
            identity,
            app_ids,
            add_app_ids,
            remove_app_ids,
            description,
        } => {
            let mut body = json!({});
            if let Some(ids) = app_ids {
                body["appIds"] = json!(ids);
            } else if !add_app_ids.is_empty() || !remove_app_ids.is_empty() {
                body["appIds"] = json!({"add": add_app_ids, "remove": remove_app_ids});
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            (
                reqwest::Method::PATCH,
                format!(
                    "{root}/applicationAccessPolicies/{}{tenant_q}",
                    segment(identity)
                ),
                Some(body),
            )
        }
        TeamsCommand::GetApplicationAccessPolicy { identity } => (
            reqwest::Method::GET,
            match identity {
                Some(i) => format!("{root}/applicationAccessPolicies/{}{tenant_q}", segment(i)),
                None => format!("{root}/applicationAccessPolicies{tenant_q}"),
            },
            None,
        ),
        TeamsCommand::RemoveApplicationAccessPolicy { identity } => (
            reqwest::Method::DELETE,
            format!(
                "{root}/applicationAccessPolicies/{}{tenant_q}",
                segment(identity)
            ),
            None,
        ),
        TeamsCommand::GrantApplicationAccessPolicy {
            policy_name,
            identity,
            global,
        } => {
            let who = if *global {
                json!({"global": true})
            } else {
                json!({"userId": identity})
            };
            match policy_name {
                Some(p) => (
                    reqwest::Method::POST,
                    format!(
                        "{root}/applicationAccessPolicies/{}/grant{tenant_q}",
                        segment(p)
                    ),
                    Some(who),
                ),
                None => (
                    reqwest::Method::POST,
                    format!("{root}/applicationAccessPolicyAssignments/revoke{tenant_q}"),
                    Some(who),
                ),
            }
        }
        TeamsCommand::Settings {
            propagation_seconds,
            access_policy_error,
        } => {
            if propagation_seconds.is_none() && access_policy_error.is_none() {
                (reqwest::Method::GET, format!("{root}/settings"), None)
            } else {
                (
                    reqwest::Method::PATCH,
                    format!("{root}/settings"),
                    Some(
                        json!({"policyPropagationSeconds": propagation_seconds, "accessPolicyError": access_policy_error}),
                    ),
                )
            }
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut req = t.client.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the emulator at {}", t.base))?;
        let status = resp.status();
        let text = resp.text().await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let msg = value["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            bail!("{} ({status})", msg);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        Ok(())
    })
}
