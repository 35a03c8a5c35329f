//! Webhooks: the body of `/start`, and the synchronous validation POST (reference §5.1).
//!
//! Notification delivery, retries and the delivery history are in `delivery.rs`; they use
//! the client built here.
//!
//! The outgoing client trusts only the emulator's own CA and the extra CA file the world
//! names (`[server.management] webhook_ca_file`), uses no proxy, never follows a redirect
//! (a 3xx is "not 200") and gives the receiver five seconds. It calls nothing but the address
//! given in the request, and only when its host is an allowed receiver: a loopback name by
//! default, or one of `[server.management] webhook_allowed_hosts`. Header names go out in
//! lower case (hyper writes HTTP/1 header names that way): `webhook-validationcode`,
//! `webhook-authid`.

use std::time::Duration;

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::dates::parse_request_time;
use super::errors::{AfError, WEBHOOK_NOT_200, WEBHOOK_NOT_HTTPS};
use super::wire::Webhook;

/// How long the receiver has to answer the validation POST (and each notification).
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The webhook a `/start` body asks for: `None` = no webhook (also for bodies that carry none:
/// nothing, `""`, `{}`, `null`, non-JSON, or an empty address as Microsoft's own support
/// script sends).
pub fn parse_start_body(
    body: &[u8],
    form: bool,
    now: OffsetDateTime,
) -> Result<Option<Webhook>, AfError> {
    if form || body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(body) else {
        return Ok(None);
    };
    // Keys are matched case-insensitively (JSON.NET's default); `{"webhook": …}` or the
    // webhook object itself at the top level.
    let hook = match get_ci(&top, "webhook") {
        Some(Value::Object(h)) => h.clone(),
        Some(_) => return Ok(None),
        None if get_ci(&top, "address").is_some() => top,
        None => return Ok(None),
    };
    let address = match get_ci(&hook, "address") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => return Ok(None),
    };
    let auth_id = match get_ci(&hook, "authId") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let expiration_raw = get_ci(&hook, "expiration").cloned().unwrap_or(Value::Null);
    let expiration = match &expiration_raw {
        Value::String(s) if !s.is_empty() => {
            let t = parse_request_time(s)
                .ok_or_else(|| AfError::new("AF20002", &["expiration", "datetime"]))?;
            if t <= now {
                return Err(AfError::new("AF20003", &[s]));
            }
            Some(t)
        }
        Value::String(_) | Value::Null => None,
        _ => return Err(AfError::new("AF20002", &["expiration", "datetime"])),
    };
    Ok(Some(Webhook {
        address,
        auth_id,
        expiration_raw,
        expiration,
        disabled: false,
    }))
}

fn get_ci<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// Builds the outgoing client: trusts `ca_pems` only (the emulator's CA, extra CA files).
pub fn build_client(ca_pems: &[String]) -> Result<reqwest::Client, String> {
    let mut certs = Vec::new();
    for pem in ca_pems {
        certs.extend(
            reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| format!("webhook CA: {e}"))?,
        );
    }
    reqwest::Client::builder()
        .tls_certs_only(certs)
        .https_only(true)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(VALIDATION_TIMEOUT)
        .build()
        .map_err(|e| format!("webhook client: {e}"))
}

/// Receivers a webhook may point at when the world names none: this machine only.
pub const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// Whether `address` names an allowed receiver host: one of `allowed` (the world's
/// `webhook_allowed_hosts`, compared case-insensitively), else a loopback name. The emulator
/// never connects anywhere else, so a test run cannot reach the network through a webhook.
pub fn receiver_allowed(address: &str, allowed: &[String]) -> bool {
    let Ok(url) = reqwest::Url::parse(address) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if allowed.is_empty() {
        let host = host.to_ascii_lowercase();
        return LOOPBACK_HOSTS.contains(&host.as_str()) || host.ends_with(".localhost");
    }
    allowed.iter().any(|a| a.eq_ignore_ascii_case(host))
}

/// Sends the validation POST; `Ok` only for HTTP 200. The error is AF20021 with the reason.
/// A receiver outside `allowed_hosts` gets the "did not return HTTP 200" answer without any
/// connection being made.
pub async fn validate(
    client: Result<reqwest::Client, String>,
    hook: &Webhook,
    allowed_hosts: &[String],
) -> Result<(), AfError> {
    let fail = |why: &str| AfError::new("AF20021", &[&hook.address, why]);
    let is_https = hook
        .address
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    if !is_https {
        return Err(fail(WEBHOOK_NOT_HTTPS));
    }
    if !receiver_allowed(&hook.address, allowed_hosts) {
        tracing::warn!(
            "webhook {} refused: its host is not an allowed receiver (server.management.webhook_allowed_hosts)",
            hook.address
        );
        return Err(fail(WEBHOOK_NOT_200));
    }
    let client = client.map_err(|e| {
        tracing::error!("cannot validate webhook {}: {e}", hook.address);
        fail(WEBHOOK_NOT_200)
    })?;
    let code = uuid::Uuid::new_v4().simple().to_string();
    let mut req = client
        .post(&hook.address)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Webhook-ValidationCode", &code)
        .body(json!({ "validationCode": code }).to_string());
    if !hook.auth_id.is_empty() {
        req = req.header("Webhook-AuthID", &hook.auth_id);
    }
    match req.send().await {
        Ok(resp) if resp.status() == reqwest::StatusCode::OK => Ok(()),
        Ok(resp) => {
            tracing::debug!(
                "webhook {} answered {} to validation",
                hook.address,
                resp.status()
            );
            Err(fail(WEBHOOK_NOT_200))
        }
        Err(e) => {
            tracing::debug!("webhook {} validation failed: {e}", hook.address);
            Err(fail(WEBHOOK_NOT_200))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_receivers() {
        let none: Vec<String> = Vec::new();
        for ok in [
            "https://localhost:8443/hook",
            "https://127.0.0.1/x",
            "https://[::1]:9/x",
            "https://receiver.localhost/x",
        ] {
            assert!(receiver_allowed(ok, &none), "{ok}");
        }
        for bad in [
            "https://example.com/hook",
            "https://10.0.0.1/x",
            "https://localhost.example.com/x",
            "not a url",
            "https:///nohost",
        ] {
            assert!(!receiver_allowed(bad, &none), "{bad}");
        }
        let listed = vec!["hooks.contoso.test".to_string()];
        assert!(receiver_allowed("https://HOOKS.contoso.test/x", &listed));
        assert!(!receiver_allowed("https://localhost/x", &listed));
    }
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2030-01-01 00:00 UTC);

    #[test]
    fn bodies_without_a_webhook() {
        for body in [
            &b""[..],
            b"  ",
            b"\"\"",
            b"{}",
            b"null",
            b"not json",
            b"{\"webhook\":null}",
            br#"{"address":"","authId":"O365ActivityAPINotification","expiration":""}"#,
        ] {
            assert_eq!(parse_start_body(body, false, NOW), Ok(None), "{body:?}");
        }
        let json = br#"{"webhook":{"address":"https://x/"}}"#;
        assert_eq!(parse_start_body(json, true, NOW), Ok(None));
    }

    #[test]
    fn wrapped_unwrapped_and_case_insensitive() {
        let a = parse_start_body(
            br#"{"webhook":{"address":"https://h/o365/","authId":"o365activityapinotification","expiration":""}}"#,
            false,
            NOW,
        )
        .expect("ok")
        .expect("webhook");
        let b = parse_start_body(
            br#"{"Address":"https://h/o365/","AUTHID":"o365activityapinotification","expiration":"","extra":1}"#,
            false,
            NOW,
        )
        .expect("ok")
        .expect("webhook");
        assert!(a.same_properties(&b));
        assert_eq!(a.expiration, None);
    }

    #[test]
    fn expirations() {
        let past = br#"{"webhook":{"address":"https://h/","expiration":"2020-01-01T00:00:00"}}"#;
        assert_eq!(
            parse_start_body(past, false, NOW).unwrap_err().code,
            "AF20003"
        );
        let bad = br#"{"webhook":{"address":"https://h/","expiration":"tomorrow"}}"#;
        assert_eq!(
            parse_start_body(bad, false, NOW).unwrap_err().code,
            "AF20002"
        );
        let later = br#"{"webhook":{"address":"https://h/","expiration":"2031-01-01"}}"#;
        let hook = parse_start_body(later, false, NOW)
            .expect("ok")
            .expect("hook");
        assert_eq!(hook.expiration, Some(datetime!(2031-01-01 00:00 UTC)));
    }
}
