//! Azure Communication Services: connection strings, the HMAC-SHA256 request signer, and the
//! Identity and Teams Phone extensibility assignment calls, over HMAC or an Entra token.
//!
//! The signer follows the service's documented scheme (and the SDKs, byte for byte):
//! `METHOD\nPATH_AND_QUERY\nx-ms-date;host;x-ms-content-sha256`, where the path and query are
//! exactly the request target sent (percent-encoding untouched), `x-ms-date` is the RFC 1123
//! time of *this* attempt and the content hash is `base64(SHA-256(body bytes))`; the key is the
//! base64-decoded access key. Every retry is signed afresh.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::auth::TokenClient;
use crate::retry::{self, Reply};
use crate::ClientError;

/// The Identity API version the SDKs default to.
pub const IDENTITY_API_VERSION: &str = "2023-10-01";
/// The Teams Phone extensibility (assignments) API version.
pub const TPE_API_VERSION: &str = "2025-06-30";
/// The Entra scope of ACS's data plane.
pub const ACS_SCOPE: &str = "https://communication.azure.com/.default";

/// A parsed `endpoint=https://…/;accesskey=…` connection string.
#[derive(Clone)]
pub struct ConnectionString {
    /// Scheme and authority, without a trailing slash: `https://host:port`.
    pub endpoint: String,
    /// The authority (`host[:port]`) that is signed as `host`.
    pub host: String,
    /// The decoded access key.
    pub access_key: Vec<u8>,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ConnectionString")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl ConnectionString {
    /// Parses `endpoint=…;accesskey=…` (keys case-insensitive, any order, `;` separated).
    pub fn parse(text: &str) -> Result<ConnectionString, ClientError> {
        let mut endpoint = None;
        let mut key = None;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(ClientError::Config(format!(
                    "connection string part {part:?} is not name=value"
                )));
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.trim().to_string()),
                // The value is base64 and may itself end in '='.
                "accesskey" => key = Some(value.trim().to_string()),
                _ => {}
            }
        }
        let endpoint = endpoint
            .ok_or_else(|| ClientError::Config("the connection string has no endpoint=".into()))?;
        let key = key
            .ok_or_else(|| ClientError::Config("the connection string has no accesskey=".into()))?;
        let access_key = STANDARD.decode(&key).map_err(|_| {
            ClientError::Config("the connection string's accesskey is not base64".into())
        })?;
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let host = authority_of(&endpoint)?;
        Ok(ConnectionString {
            endpoint,
            host,
            access_key,
        })
    }
}

/// `host[:port]` of an `https://host[:port][/]` endpoint.
fn authority_of(endpoint: &str) -> Result<String, ClientError> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .ok_or_else(|| {
            ClientError::Config(format!("endpoint {endpoint:?} is not an http(s) URL"))
        })?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(ClientError::Config(format!(
            "endpoint {endpoint:?} has no host"
        )));
    }
    Ok(host.to_string())
}

/// `base64(SHA-256(body))`.
pub fn content_hash(body: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(body))
}

/// RFC 1123 in GMT, as `x-ms-date` wants it: `Sat, 21 Nov 2026 23:36:09 GMT`.
pub fn rfc1123(t: OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The string to sign: `METHOD\nPATH_AND_QUERY\nDATE;HOST;CONTENT_HASH`.
pub fn string_to_sign(
    method: &str,
    path_and_query: &str,
    date: &str,
    host: &str,
    hash: &str,
) -> String {
    format!(
        "{}\n{path_and_query}\n{date};{host};{hash}",
        method.to_ascii_uppercase()
    )
}

/// The three headers of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub x_ms_date: String,
    pub x_ms_content_sha256: String,
    pub authorization: String,
}

/// Signs one request at time `now`.
pub fn sign(
    key: &[u8],
    method: &str,
    path_and_query: &str,
    host: &str,
    now: OffsetDateTime,
    body: &[u8],
) -> Signature {
    let date = rfc1123(now);
    let hash = content_hash(body);
    let to_sign = string_to_sign(method, path_and_query, &date, host, &hash);
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let sig = STANDARD.encode(hmac::sign(&key, to_sign.as_bytes()).as_ref());
    Signature {
        x_ms_date: date,
        x_ms_content_sha256: hash,
        authorization: format!(
            "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={sig}"
        ),
    }
}

/// Percent-encodes one path segment (everything but RFC 3986's unreserved characters), as
/// the SDKs encode identity ids: `8:acs:…` → `8%3Aacs%3A…`.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How requests are authenticated.
pub enum AcsAuth<'a> {
    /// HMAC-SHA256 with an access key; `host` is the authority signed.
    Hmac { key: Vec<u8>, host: String },
    /// An Entra bearer token for [`ACS_SCOPE`].
    Entra(&'a TokenClient),
}

/// What a create-or-replace PUT did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// 201.
    Created,
    /// 200.
    Replaced,
}

/// A token issued to an identity.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_on: String,
}

/// An ACS resource's data plane.
pub struct AcsClient<'a> {
    http: reqwest::Client,
    endpoint: String,
    auth: AcsAuth<'a>,
}

impl<'a> AcsClient<'a> {
    /// Signs with the connection string's access key.
    pub fn with_connection_string(http: reqwest::Client, conn: &ConnectionString) -> AcsClient<'a> {
        AcsClient {
            http,
            endpoint: conn.endpoint.clone(),
            auth: AcsAuth::Hmac {
                key: conn.access_key.clone(),
                host: conn.host.clone(),
            },
        }
    }

    /// Sends Entra bearer tokens from `tokens` to `endpoint` (`https://host[:port][/]`).
    pub fn with_entra(
        http: reqwest::Client,
        endpoint: &str,
        tokens: &'a TokenClient,
    ) -> AcsClient<'a> {
        AcsClient {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            auth: AcsAuth::Entra(tokens),
        }
    }

    /// Sends `method path_and_query` (sent and signed exactly as given) with `body`, under the
    /// bounded retry policy ([`retry::send`]); each attempt is signed at the time it is sent.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<Reply, ClientError> {
        let url = format!("{}{path_and_query}", self.endpoint);
        let bearer = match &self.auth {
            AcsAuth::Entra(tokens) => Some(tokens.token(ACS_SCOPE).await?),
            AcsAuth::Hmac { .. } => None,
        };
        let build = || {
            let mut req = self.http.request(method.clone(), &url).body(body.to_vec());
            if !body.is_empty() {
                req = req.header("content-type", "application/json");
            }
            match (&self.auth, &bearer) {
                (AcsAuth::Hmac { key, host }, _) => {
                    let s = sign(
                        key,
                        method.as_str(),
                        path_and_query,
                        host,
                        OffsetDateTime::now_utc(),
                        body,
                    );
                    req.header("x-ms-date", s.x_ms_date)
                        .header("x-ms-content-sha256", s.x_ms_content_sha256)
                        .header("authorization", s.authorization)
                }
                (AcsAuth::Entra(_), Some(token)) => req.bearer_auth(token),
                (AcsAuth::Entra(_), None) => req,
            }
        };
        Ok(retry::send(build).await?)
    }

    /// Sends and turns a non-2xx answer into [`ClientError::Service`] with ACS's error code.
    async fn call(&self, method: Method, path: &str, body: &[u8]) -> Result<Reply, ClientError> {
        let reply = self.send(method, path, body).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(service_error(&reply))
        }
    }

    /// `POST /identities` → the new identity's id (`8:acs:…`).
    pub async fn create_identity(&self) -> Result<String, ClientError> {
        let path = format!("/identities?api-version={IDENTITY_API_VERSION}");
        let reply = self.call(Method::POST, &path, b"").await?;
        reply
            .json()
            .and_then(|v| v["identity"]["id"].as_str().map(str::to_string))
            .ok_or_else(|| unexpected(&reply, "no identity.id"))
    }

    /// `POST /identities/{id}/:issueAccessToken` with `scopes` and an optional lifetime.
    pub async fn issue_token(
        &self,
        identity: &str,
        scopes: &[String],
        expires_in_minutes: Option<u32>,
    ) -> Result<IssuedToken, ClientError> {
        let path = format!(
            "/identities/{}/:issueAccessToken?api-version={IDENTITY_API_VERSION}",
            encode_segment(identity)
        );
        let mut body = json!({ "scopes": scopes });
        if let Some(m) = expires_in_minutes {
            body["expiresInMinutes"] = json!(m);
        }
        let reply = self
            .call(Method::POST, &path, body.to_string().as_bytes())
            .await?;
        let v = reply.json().unwrap_or_default();
        match (v["token"].as_str(), v["expiresOn"].as_str()) {
            (Some(token), Some(expires_on)) => Ok(IssuedToken {
                token: token.to_string(),
                expires_on: expires_on.to_string(),
            }),
            _ => Err(unexpected(&reply, "no token/expiresOn")),
        }
    }

    fn assignment_path(tenant: &str, object: &str) -> String {
        format!(
            "/access/teamsExtension/tenants/{}/assignments/{}?api-version={TPE_API_VERSION}",
            encode_segment(tenant),
            encode_segment(object)
        )
    }

    /// `PUT` an assignment: 201 created, 200 replaced.
    pub async fn put_assignment(
        &self,
        tenant: &str,
        object: &str,
        principal_type: &str,
        client_ids: &[String],
    ) -> Result<Upsert, ClientError> {
        let mut body = json!({ "principalType": principal_type });
        if !client_ids.is_empty() {
            body["clientIds"] = json!(client_ids);
        }
        let reply = self
            .call(
                Method::PUT,
                &Self::assignment_path(tenant, object),
                body.to_string().as_bytes(),
            )
            .await?;
        match reply.status {
            StatusCode::CREATED => Ok(Upsert::Created),
            StatusCode::OK => Ok(Upsert::Replaced),
            _ => Err(unexpected(&reply, "a PUT answers 201 or 200")),
        }
    }

    /// `GET` an assignment: `None` on 404 (there is none; that is an answer, not an error).
    pub async fn get_assignment(
        &self,
        tenant: &str,
        object: &str,
    ) -> Result<Option<Value>, ClientError> {
        let reply = self
            .send(Method::GET, &Self::assignment_path(tenant, object), b"")
            .await?;
        match reply.status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(reply.json().unwrap_or_default())),
            _ => Err(service_error(&reply)),
        }
    }

    /// `DELETE` an assignment (204, also when there was none).
    pub async fn delete_assignment(&self, tenant: &str, object: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &Self::assignment_path(tenant, object), b"")
            .await
            .map(drop)
    }
}

/// ACS's `{"error":{"code","message"}}` as a [`ClientError`].
pub fn service_error(reply: &Reply) -> ClientError {
    reply.error("acs")
}

fn unexpected(reply: &Reply, what: &str) -> ClientError {
    ClientError::Service {
        service: "acs",
        status: reply.status.as_u16(),
        code: "unexpected_response".into(),
        message: what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference §2.2's test vectors (signed by the real JS SDK).
    #[test]
    fn signatures_match_the_sdk_test_vectors() {
        let key = STANDARD
            .decode("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
            .expect("base64");
        let date = OffsetDateTime::parse(
            "2026-11-21T23:36:09Z",
            &time::format_description::well_known::Rfc3339,
        )
        .expect("date");
        assert_eq!(rfc1123(date), "Sat, 21 Nov 2026 23:36:09 GMT");
        let cases: [(&str, &str, &str, &str); 3] = [
            (
                "/identities?api-version=2023-10-01",
                "",
                "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                "N5X7hf+ke9Hkr+MyQGgPm+9kbBaDw9LLOTHvSfx7M/k=",
            ),
            (
                "/identities?api-version=2023-10-01",
                r#"{"createTokenWithScopes":["chat"]}"#,
                "WTRvgEjjVd+bvyKw3WgXgDkU81aV8FWq+4/BE+he0+A=",
                "Lu7NqZPDUp8jeBK/Sxm7gmWWibMiC2Hjazo0cnkRat4=",
            ),
            (
                "/identities/8%3Aacs%3Ares_0000/:issueAccessToken?api-version=2023-10-01",
                r#"{"scopes":["voip"],"expiresInMinutes":60}"#,
                "GNtmihW0aWKrZ0DRV1+wUfLysZuegWcqHu8n9mgUyTE=",
                "bpHDuzIg4m+TKvxNfVto1UxSfiozBnI89E5iX2eDkGU=",
            ),
        ];
        for (target, body, hash, signature) in cases {
            let s = sign(
                &key,
                "post",
                target,
                "127.0.0.1:18089",
                date,
                body.as_bytes(),
            );
            assert_eq!(s.x_ms_content_sha256, hash, "{target} {body}");
            assert_eq!(
                s.authorization,
                format!("HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}")
            );
        }
    }

    #[test]
    fn connection_strings() {
        let c = ConnectionString::parse(
            "endpoint=https://127.0.0.1:8443/;accesskey=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .expect("parses");
        assert_eq!(c.endpoint, "https://127.0.0.1:8443");
        assert_eq!(c.host, "127.0.0.1:8443");
        assert_eq!(c.access_key, b"0123456789abcdef0123456789abcdef");
        let c =
            ConnectionString::parse("AccessKey=AAAA;Endpoint=https://x.communication.azure.com")
                .expect("any order, any case");
        assert_eq!(c.host, "x.communication.azure.com");
        assert!(ConnectionString::parse("endpoint=https://x/").is_err());
        assert!(ConnectionString::parse("accesskey=AAAA").is_err());
        assert!(ConnectionString::parse("endpoint=ftp://x;accesskey=AAAA").is_err());
        assert!(ConnectionString::parse("endpoint=https://x;accesskey=not base64!").is_err());
        assert!(!format!("{c:?}").contains("AAAA"));
    }

    #[test]
    fn segments_are_percent_encoded_like_the_sdks() {
        assert_eq!(encode_segment("8:acs:res_0000"), "8%3Aacs%3Ares_0000");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }
}
