//! Microsoft Graph: online meetings (create, and createOrGet by `externalId`) for an organizer
//! an application access policy covers, and chat messages (send, and every message across the
//! pages `@odata.nextLink` names, followed exactly as given).

use reqwest::{Method, Url};
use serde_json::{json, Value};

use crate::auth::TokenClient;
use crate::retry::Reply;
use crate::ClientError;

/// Graph's `.default` scope: every permission consented for the app (or, delegated, the user).
pub const SCOPE: &str = "https://graph.microsoft.com/.default";
/// Page size asked for when listing chat messages (Graph's maximum for them).
pub const MESSAGES_PAGE_SIZE: u32 = 50;
/// A safety stop for a server whose `@odata.nextLink` never ends.
pub const MAX_PAGES: usize = 1000;

/// An online meeting as created or found.
#[derive(Debug, Clone)]
pub struct OnlineMeeting {
    pub id: String,
    pub join_web_url: String,
    /// `false` when createOrGet found an existing meeting (200 instead of 201).
    pub created: bool,
    pub resource: Value,
}

/// One page of chat messages and the link to the next one, as Graph gave it.
#[derive(Debug, Clone)]
pub struct MessagePage {
    pub messages: Vec<Value>,
    pub next_link: Option<String>,
}

/// A Graph client on `base` (e.g. `https://graph.microsoft.com/v1.0`).
pub struct Graph<'a> {
    pub http: reqwest::Client,
    pub tokens: &'a TokenClient,
    pub base: String,
}

impl<'a> Graph<'a> {
    pub fn new(http: reqwest::Client, tokens: &'a TokenClient, base: &str) -> Graph<'a> {
        Graph {
            http,
            tokens,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// `base` plus path segments, each percent-encoded (chat ids hold `:` and `@`).
    fn url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = Url::parse(&self.base)
            .map_err(|e| ClientError::Config(format!("Graph URL {}: {e}", self.base)))?;
        url.path_segments_mut()
            .map_err(|_| ClientError::Config(format!("Graph URL {} has no path", self.base)))?
            .extend(segments);
        Ok(url)
    }

    /// One request with a Graph token, under the bounded retry policy; a 401 gets one fresh
    /// token (the cached one may have been revoked), then the answer stands.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        self.tokens
            .send_with_token(SCOPE, |token| {
                let req = self.http.request(method.clone(), url).bearer_auth(token);
                match body {
                    Some(b) => req.json(b),
                    None => req,
                }
            })
            .await
    }

    /// A non-2xx answer as an error carrying Graph's `error.code` (`Forbidden`, …).
    fn fail(reply: &Reply) -> ClientError {
        reply.error("graph")
    }

    fn json_of(reply: &Reply) -> Result<Value, ClientError> {
        if !reply.status.is_success() {
            return Err(Self::fail(reply));
        }
        reply.json().ok_or_else(|| ClientError::Service {
            service: "graph",
            status: reply.status.as_u16(),
            code: "InvalidResponse".into(),
            message: "the answer is not JSON".into(),
        })
    }

    fn meeting_of(reply: &Reply) -> Result<OnlineMeeting, ClientError> {
        let resource = Self::json_of(reply)?;
        let field = |k: &str| resource[k].as_str().unwrap_or_default().to_string();
        let (id, join_web_url) = (field("id"), field("joinWebUrl"));
        if id.is_empty() {
            return Err(ClientError::Service {
                service: "graph",
                status: reply.status.as_u16(),
                code: "InvalidResponse".into(),
                message: "the online meeting has no id".into(),
            });
        }
        Ok(OnlineMeeting {
            id,
            join_web_url,
            created: reply.status.as_u16() == 201,
            resource,
        })
    }

    /// `POST /users/{user}/onlineMeetings`: a new meeting every time.
    pub async fn create_meeting(
        &self,
        user: &str,
        subject: &str,
    ) -> Result<OnlineMeeting, ClientError> {
        let url = self.url(&["users", user, "onlineMeetings"])?;
        let reply = self
            .call(
                Method::POST,
                url.as_str(),
                Some(&json!({"subject": subject})),
            )
            .await?;
        Self::meeting_of(&reply)
    }

    /// `POST /users/{user}/onlineMeetings/createOrGet`: the meeting of `external_id`, created
    /// on first use (201) and found afterwards (200), so that a repeated run never duplicates it.
    pub async fn create_or_get_meeting(
        &self,
        user: &str,
        external_id: &str,
        subject: &str,
    ) -> Result<OnlineMeeting, ClientError> {
        let url = self.url(&["users", user, "onlineMeetings", "createOrGet"])?;
        let body = json!({"externalId": external_id, "subject": subject});
        let reply = self.call(Method::POST, url.as_str(), Some(&body)).await?;
        Self::meeting_of(&reply)
    }

    /// `GET /users/{user}/onlineMeetings/{id}`.
    pub async fn get_meeting(&self, user: &str, id: &str) -> Result<Value, ClientError> {
        let url = self.url(&["users", user, "onlineMeetings", id])?;
        Self::json_of(&self.call(Method::GET, url.as_str(), None).await?)
    }

    /// `POST /chats/{chat}/messages` with a text body; the created message.
    pub async fn send_message(&self, chat: &str, text: &str) -> Result<Value, ClientError> {
        let url = self.url(&["chats", chat, "messages"])?;
        let body = json!({"body": {"contentType": "text", "content": text}});
        Self::json_of(&self.call(Method::POST, url.as_str(), Some(&body)).await?)
    }

    /// The first page of a chat's messages (`$top` = [`MESSAGES_PAGE_SIZE`]).
    pub fn messages_url(&self, chat: &str) -> Result<String, ClientError> {
        let mut url = self.url(&["chats", chat, "messages"])?;
        url.set_query(Some(&format!("$top={MESSAGES_PAGE_SIZE}")));
        Ok(url.to_string())
    }

    /// One page at `url` (the first page's URL, or an `@odata.nextLink` exactly as given).
    pub async fn message_page(&self, url: &str) -> Result<MessagePage, ClientError> {
        let page = Self::json_of(&self.call(Method::GET, url, None).await?)?;
        Ok(MessagePage {
            messages: page["value"].as_array().cloned().unwrap_or_default(),
            next_link: page["@odata.nextLink"].as_str().map(str::to_string),
        })
    }

    /// Every page from `first_url` to the last, each requested once.
    pub async fn message_pages(&self, first_url: &str) -> Result<Vec<MessagePage>, ClientError> {
        let mut pages = Vec::new();
        let mut next = Some(first_url.to_string());
        while let Some(url) = next.take() {
            if pages.len() >= MAX_PAGES {
                return Err(ClientError::Service {
                    service: "graph",
                    status: 200,
                    code: "TooManyPages".into(),
                    message: format!("more than {MAX_PAGES} pages of chat messages"),
                });
            }
            let page = self.message_page(&url).await?;
            next = page.next_link.clone();
            pages.push(page);
        }
        Ok(pages)
    }

    /// Every message of the chat, newest first, across all pages.
    pub async fn messages(&self, chat: &str) -> Result<Vec<Value>, ClientError> {
        let pages = self.message_pages(&self.messages_url(chat)?).await?;
        Ok(pages.into_iter().flat_map(|p| p.messages).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Credential;

    #[test]
    fn path_segments_are_percent_encoded_and_the_first_page_asks_for_fifty() {
        let tokens = TokenClient::new(
            reqwest::Client::new(),
            "https://login.example",
            "t",
            "c",
            Credential::Secret("s".into()),
        );
        let graph = Graph::new(
            reqwest::Client::new(),
            &tokens,
            "https://graph.example/v1.0/",
        );
        let url = graph.messages_url("19:a/b c@thread.v2").expect("a URL");
        assert_eq!(
            url,
            "https://graph.example/v1.0/chats/19:a%2Fb%20c@thread.v2/messages?$top=50"
        );
        let url = graph
            .url(&[
                "users",
                "adele@contoso.com",
                "onlineMeetings",
                "createOrGet",
            ])
            .expect("a URL");
        assert_eq!(
            url.as_str(),
            "https://graph.example/v1.0/users/adele@contoso.com/onlineMeetings/createOrGet"
        );
    }
}
