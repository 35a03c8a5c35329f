//! Azure Communication Services operations: `acs-identity`, `acs-assignments`, `acs-request`
//! (conformance/CONTRACT.md), over HMAC (`ACS_CONNECTION_STRING`) or, with
//! `M365_ACS_AUTH=entra`, an Entra token from the `AZURE_*` credential.

use m365_reference_client::acs::{AcsClient, ConnectionString, Upsert};
use m365_reference_client::auth::TokenClient;
use m365_reference_client::ClientError;
use reqwest::Method;
use serde_json::json;

use crate::common::{emit, env, token_client};

/// An optional contract variable (absent and empty are the same).
fn param(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A comma-separated list parameter.
fn list(name: &str) -> Vec<String> {
    param(name)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The token client, only when `M365_ACS_AUTH=entra` (it must outlive the ACS client).
fn entra_tokens(http: &reqwest::Client) -> Result<Option<TokenClient>, ClientError> {
    match param("M365_ACS_AUTH").as_deref() {
        None | Some("hmac") => Ok(None),
        Some("entra") => Ok(Some(token_client(http)?)),
        Some(other) => Err(ClientError::Config(format!(
            "M365_ACS_AUTH={other:?} is neither hmac nor entra"
        ))),
    }
}

fn client<'a>(
    http: &reqwest::Client,
    tokens: Option<&'a TokenClient>,
) -> Result<AcsClient<'a>, ClientError> {
    match tokens {
        Some(t) => Ok(AcsClient::with_entra(
            http.clone(),
            &env("ACS_ENDPOINT")?,
            t,
        )),
        None => Ok(AcsClient::with_connection_string(
            http.clone(),
            &ConnectionString::parse(&env("ACS_CONNECTION_STRING")?)?,
        )),
    }
}

/// Creates a user and issues it a token.
pub async fn identity(http: &reqwest::Client) -> Result<(), ClientError> {
    let tokens = entra_tokens(http)?;
    let acs = client(http, tokens.as_ref())?;
    let mut scopes = list("M365_ACS_SCOPES");
    if scopes.is_empty() {
        scopes.push("voip".into());
    }
    let minutes = match param("M365_ACS_EXPIRES_MINUTES") {
        None => None,
        Some(m) => Some(m.parse::<u32>().map_err(|_| {
            ClientError::Config(format!("M365_ACS_EXPIRES_MINUTES={m:?} is not a number"))
        })?),
    };
    let id = acs.create_identity().await?;
    let token = acs.issue_token(&id, &scopes, minutes).await?;
    emit(json!({"identity": id, "expiresOn": token.expires_on}));
    Ok(())
}

/// Ensures, reads or deletes a Teams Phone extensibility assignment.
pub async fn assignments(http: &reqwest::Client) -> Result<(), ClientError> {
    let tokens = entra_tokens(http)?;
    let acs = client(http, tokens.as_ref())?;
    let tenant = env("M365_ACS_TENANT_ID")?;
    let object = env("M365_ACS_OBJECT_ID")?;
    let result = match env("M365_ACS_ACTION")?.as_str() {
        "ensure" => {
            let principal = param("M365_ACS_PRINCIPAL_TYPE").unwrap_or_else(|| "user".into());
            let client_ids = list("M365_ACS_CLIENT_IDS");
            match acs
                .put_assignment(&tenant, &object, &principal, &client_ids)
                .await?
            {
                Upsert::Created => "created",
                Upsert::Replaced => "replaced",
            }
        }
        "get" => match acs.get_assignment(&tenant, &object).await? {
            Some(_) => "found",
            None => "absent",
        },
        "delete" => {
            acs.delete_assignment(&tenant, &object).await?;
            "deleted"
        }
        other => {
            return Err(ClientError::Config(format!(
                "M365_ACS_ACTION={other:?} is not ensure, get or delete"
            )))
        }
    };
    emit(json!({"assignment": object, "result": result}));
    Ok(())
}

/// Signs and sends exactly the request given; any final answer is reported (exit 0).
pub async fn request(http: &reqwest::Client) -> Result<(), ClientError> {
    let tokens = entra_tokens(http)?;
    let acs = client(http, tokens.as_ref())?;
    let method = env("M365_ACS_METHOD")?;
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| ClientError::Config(format!("M365_ACS_METHOD={method:?} is not a method")))?;
    let path = env("M365_ACS_PATH")?;
    if !path.starts_with('/') {
        return Err(ClientError::Config(format!(
            "M365_ACS_PATH={path:?} does not start with '/'"
        )));
    }
    let body = std::env::var("M365_ACS_BODY").unwrap_or_default();
    let reply = acs.send(method, &path, body.as_bytes()).await?;
    let mut line = json!({"status": reply.status.as_u16()});
    if !reply.status.is_success() {
        if let Some(code) = reply.error_code() {
            line["error"] = json!(code);
        }
    }
    emit(line);
    Ok(())
}
