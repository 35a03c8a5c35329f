//! Azure Communication Services HMAC-SHA256 request signing (reference acs-graph.md §2.2):
//! `VERB \n PATH_AND_QUERY \n X_MS_DATE;HOST;CONTENT_HASH`, signed with the base64-decoded
//! access key, sent as `x-ms-date`, `x-ms-content-sha256` and
//! `Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=…`.

use aws_lc_rs::{digest, hmac};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use time::OffsetDateTime;

/// An ACS resource as a connection string names it.
#[derive(Clone)]
pub struct AcsCredential {
    /// `https://host[:port]` without a trailing slash.
    pub endpoint: String,
    /// The `host[:port]` part of the endpoint: what the signature covers.
    pub host: String,
    key: hmac::Key,
}

impl std::fmt::Debug for AcsCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcsCredential")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The three headers of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub date: String,
    pub content_sha256: String,
    pub authorization: String,
}

impl AcsCredential {
    /// Parses `endpoint=https://…/;accesskey=<base64>` (keys case-insensitive, any order).
    pub fn from_connection_string(text: &str) -> Result<AcsCredential, String> {
        let (mut endpoint, mut key) = (None, None);
        for part in text.split(';').filter(|p| !p.trim().is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not name=value"))?;
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.trim().trim_end_matches('/').to_string()),
                "accesskey" => key = Some(value.trim().to_string()),
                _ => {}
            }
        }
        let endpoint = endpoint.ok_or("the connection string has no endpoint=")?;
        let key = key.ok_or("the connection string has no accesskey=")?;
        AcsCredential::new(&endpoint, &key)
    }

    pub fn new(endpoint: &str, access_key_base64: &str) -> Result<AcsCredential, String> {
        let host = endpoint
            .split_once("://")
            .map_or(endpoint, |(_, rest)| rest)
            .trim_end_matches('/')
            .to_string();
        if host.is_empty() {
            return Err(format!("endpoint '{endpoint}' has no host"));
        }
        let raw = STANDARD
            .decode(access_key_base64)
            .map_err(|_| "the access key is not base64".to_string())?;
        Ok(AcsCredential {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            host,
            key: hmac::Key::new(hmac::HMAC_SHA256, &raw),
        })
    }

    /// Signs one request at `date` (RFC 1123, e.g. `Sat, 21 Nov 2026 23:36:09 GMT`).
    pub fn sign(
        &self,
        method: &str,
        path_and_query: &str,
        date: &str,
        body: &[u8],
    ) -> SignedHeaders {
        let content_sha256 = STANDARD.encode(digest::digest(&digest::SHA256, body));
        let to_sign = format!(
            "{}\n{}\n{};{};{}",
            method.to_ascii_uppercase(),
            path_and_query,
            date,
            self.host,
            content_sha256
        );
        let signature = STANDARD.encode(hmac::sign(&self.key, to_sign.as_bytes()));
        SignedHeaders {
            date: date.to_string(),
            content_sha256,
            authorization: format!(
                "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}"
            ),
        }
    }
}

/// `Sat, 21 Nov 2026 23:36:09 GMT`.
pub fn rfc1123(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const DATE: &str = "Sat, 21 Nov 2026 23:36:09 GMT";

    fn credential() -> AcsCredential {
        AcsCredential::from_connection_string(&format!(
            "endpoint=https://127.0.0.1:18089/;accesskey={KEY}"
        ))
        .unwrap()
    }

    #[test]
    fn reference_vectors_from_the_js_sdk() {
        let c = credential();
        assert_eq!(c.host, "127.0.0.1:18089");
        let empty = c.sign("POST", "/identities?api-version=2023-10-01", DATE, b"");
        assert_eq!(
            empty.content_sha256,
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert!(empty
            .authorization
            .ends_with("&Signature=N5X7hf+ke9Hkr+MyQGgPm+9kbBaDw9LLOTHvSfx7M/k="));
        let chat = c.sign(
            "post",
            "/identities?api-version=2023-10-01",
            DATE,
            br#"{"createTokenWithScopes":["chat"]}"#,
        );
        assert_eq!(
            chat.content_sha256,
            "WTRvgEjjVd+bvyKw3WgXgDkU81aV8FWq+4/BE+he0+A="
        );
        assert!(chat
            .authorization
            .ends_with("Signature=Lu7NqZPDUp8jeBK/Sxm7gmWWibMiC2Hjazo0cnkRat4="));
        assert!(chat
            .authorization
            .starts_with("HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&"));
    }

    #[test]
    fn connection_string_errors_are_reported() {
        assert!(AcsCredential::from_connection_string("accesskey=abc").is_err());
        assert!(AcsCredential::from_connection_string("endpoint=https://x").is_err());
        assert!(AcsCredential::from_connection_string("endpoint=https://x;accesskey=%%").is_err());
        assert!(AcsCredential::from_connection_string("garbage").is_err());
    }

    #[test]
    fn rfc1123_dates() {
        let t = time::macros::datetime!(2026-11-21 23:36:09 UTC);
        assert_eq!(rfc1123(t), DATE);
    }
}
