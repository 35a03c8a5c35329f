//! Microsoft Graph operations: `graph-meeting` (createOrGet when an external id is given) and
//! `graph-chat` (as a Teams user when a user name is given: delegated token by the password
//! grant).

use m365_reference_client::auth::{Credential, TokenClient};
use m365_reference_client::graph::Graph;
use m365_reference_client::ClientError;
use serde_json::json;

use crate::common::{emit, env, token_client};

fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub async fn meeting(http: &reqwest::Client) -> Result<(), ClientError> {
    let tokens = token_client(http)?;
    let graph = Graph::new(http.clone(), &tokens, &env("M365_GRAPH_URL")?);
    let user = env("M365_GRAPH_USER_ID")?;
    let subject = optional("M365_GRAPH_MEETING_SUBJECT").unwrap_or_else(|| "Meeting".into());
    let meeting = match optional("M365_GRAPH_MEETING_EXTERNAL_ID") {
        Some(external_id) => {
            graph
                .create_or_get_meeting(&user, &external_id, &subject)
                .await?
        }
        None => graph.create_meeting(&user, &subject).await?,
    };
    emit(json!({
        "meeting": meeting.id,
        "joinWebUrl": meeting.join_web_url,
        "result": if meeting.created { "created" } else { "existing" },
    }));
    Ok(())
}

pub async fn chat(http: &reqwest::Client) -> Result<(), ClientError> {
    let tokens = match optional("AZURE_USERNAME") {
        Some(username) => TokenClient::new(
            http.clone(),
            &env("AZURE_AUTHORITY_HOST")?,
            &env("AZURE_TENANT_ID")?,
            &env("AZURE_CLIENT_ID")?,
            Credential::Password {
                username,
                password: env("AZURE_PASSWORD")?,
            },
        ),
        None => token_client(http)?,
    };
    let graph = Graph::new(http.clone(), &tokens, &env("M365_GRAPH_URL")?);
    let chat = env("M365_GRAPH_CHAT_ID")?;
    if let Some(text) = optional("M365_GRAPH_CHAT_SEND") {
        let sent = graph.send_message(&chat, &text).await?;
        emit(json!({"sent": sent["id"]}));
    }
    for message in graph.messages(&chat).await? {
        emit(json!({"message": message["id"]}));
    }
    Ok(())
}
