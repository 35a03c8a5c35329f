//! The Management Activity API as the black-box tests drive it: an emulator on a frozen
//! clock, a client, and checks of the AF error shape.

use m365_emulator::{Emulator, World};
use serde_json::Value;
use time::macros::datetime;
use time::OffsetDateTime;

use super::*;

pub const TEAMS_PHONE_SECRET: &str = "teams-phone-secret~0123456789abcdefghij";
/// A fixed "now" so that content ids, times and snapshots are stable.
pub const T0: OffsetDateTime = datetime!(2030-03-01 00:00 UTC);

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {:?}", self.status, self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct Api {
    pub e: Emulator,
    pub c: reqwest::Client,
}

impl Api {
    pub async fn start() -> Api {
        Api::with_world(World::default_world().expect("default world")).await
    }

    pub async fn with_world(world: World) -> Api {
        let e = start_with(Emulator::builder().key_seed(42).world(world)).await;
        e.clock().freeze();
        e.clock().set(T0);
        let c = client(&e);
        Api { e, c }
    }

    pub fn feed(&self, tenant: &str) -> String {
        format!("{}/api/v1.0/{tenant}/activity/feed", self.e.https_uri())
    }

    pub async fn token(&self, tenant: &str) -> String {
        secret_token(&self.c, &self.e, tenant).await
    }

    pub async fn token_of(&self, client_id: &str, secret: &str, scope: &str) -> String {
        let form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", client_id.to_string()),
            ("client_secret", secret.to_string()),
            ("scope", scope.to_string()),
        ];
        let (s, _, b) = post_form(&self.c, &token_url_v2(&self.e, CONTOSO), &form).await;
        assert_eq!(s, 200, "{b}");
        b["access_token"].as_str().expect("token").to_string()
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let resp = req.send().await.expect("request sent");
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().await.expect("body"),
        }
    }

    pub async fn get(&self, url: &str, token: &str) -> Resp {
        self.send(self.c.get(url).bearer_auth(token)).await
    }

    pub async fn post(&self, url: &str, token: &str) -> Resp {
        self.send(self.c.post(url).bearer_auth(token)).await
    }

    pub async fn post_json(&self, url: &str, token: &str, body: &Value) -> Resp {
        self.send(
            self.c
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn start_sub(&self, tenant: &str, token: &str, ct: &str) -> Resp {
        let url = format!("{}/subscriptions/start?contentType={ct}", self.feed(tenant));
        self.post(&url, token).await
    }
}

/// Headers every Management API response carries.
pub fn assert_service_headers(r: &Resp) {
    assert_eq!(
        r.header("cache-control"),
        Some("no-cache"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("pragma"), Some("no-cache"));
    assert_eq!(r.header("expires"), Some("-1"));
    assert_eq!(r.header("x-aspnet-version"), Some("4.0.30319"));
    assert_eq!(r.header("x-powered-by"), Some("ASP.NET"));
    assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")));
}

/// Checks an AF error completely (status, headers, compact body, shape) and returns the body
/// with the emulator's origin replaced, ready for a snapshot.
pub fn af(api: &Api, r: &Resp, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "status for {code}: {}", r.text);
    assert_service_headers(r);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = r.json();
    assert_eq!(r.text, body.to_string(), "compact JSON");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(1));
    assert_eq!(body["error"].as_object().map(|o| o.len()), Some(2));
    assert!(body["error"]["message"].is_string());
    redact_origin(&body, &api.e)
}

/// `v` with every occurrence of `from` in its strings replaced.
pub fn replace_in(v: &Value, from: &str, to: &str) -> Value {
    serde_json::from_str(&v.to_string().replace(from, to)).expect("still JSON")
}

pub fn journal_codes(api: &Api, operation: &str) -> Vec<(u16, Option<String>)> {
    let q = m365_emulator::journal::JournalQuery {
        operation: Some(operation.into()),
        ..Default::default()
    };
    api.e
        .journal()
        .query(&q)
        .iter()
        .map(|e| (e.status, e.error_code.clone()))
        .collect()
}
