//! Regression tests for the bugs a code review found, one test per bug.

mod support;

use serde_json::{json, Value};
use support::*;

const TEAMS_CLIENT: &str = "81a839dc-b25b-4552-bb03-aa9fa33cc6a0";

async fn post_json(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let resp = c.post(url).json(&body).send().await.expect("post");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A clock set near the end of time used to overflow and panic on every request.
#[tokio::test]
async fn regression_clock_far_future_is_refused_and_never_panics() {
    let e = start().await;
    let c = client(&e);
    let clock = format!("{}/_emulator/clock", e.https_uri());
    let (s, b) = post_json(&c, clock.clone(), json!({"set": "9999-12-31T23:59:58Z"})).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("`set`")));
    // Advancing ten years at a time reaches the clock's ceiling and stays there.
    for _ in 0..800 {
        let (s, _) = post_json(&c, clock.clone(), json!({"advance_seconds": 315_360_000})).await;
        assert_eq!(s, 200);
    }
    let (_, _, now) = get_json(&c, &clock).await;
    assert!(
        now["now"]
            .as_str()
            .is_some_and(|t| t.starts_with("9000-01-01")),
        "{now}"
    );
    assert_eq!(
        secret_token_status(&c, &e).await,
        200,
        "token issuance still works at the ceiling"
    );
    let (s, _) = post_json(
        &c,
        format!("{}/_emulator/reset", e.https_uri()),
        json!(null),
    )
    .await;
    assert_eq!(s, 200);
}

async fn secret_token_status(c: &reqwest::Client, e: &m365_emulator::Emulator) -> u16 {
    post_form(
        c,
        &token_url_v2(e, CONTOSO),
        &secret_form_v2(COLLECTOR, COLLECTOR_SECRET),
    )
    .await
    .0
}

/// A huge rule lifetime used to panic every routed request.
#[tokio::test]
async fn regression_fault_lifetime_is_bounded() {
    let e = start().await;
    let c = client(&e);
    let (s, b) = post_json(
        &c,
        format!("{}/_emulator/faults", e.https_uri()),
        json!({"action": {"delay_ms": 1}, "lifetime": {"seconds": 1e300}}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("`lifetime.seconds`")));
    assert_eq!(secret_token_status(&c, &e).await, 200);
}

/// Web pages must not drive the control plane (cross-site POSTs, DNS rebinding).
#[tokio::test]
async fn regression_control_plane_refuses_cross_site_and_rebound_hosts() {
    let e = start().await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let consents = format!(
        "{}/_emulator/tenants/northwind.onmicrosoft.com/consents",
        e.uri()
    );
    let cross = c
        .post(&consents)
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .body(json!({"client_id": COLLECTOR}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(cross.status().as_u16(), 403);
    let fetch_meta = c
        .post(format!("{}/_emulator/reset", e.uri()))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("post");
    assert_eq!(fetch_meta.status().as_u16(), 403);
    let rebound = c
        .get(format!("{}/_emulator/world", e.uri()))
        .header("host", "attacker.example:8080")
        .send()
        .await
        .expect("get");
    assert_eq!(rebound.status().as_u16(), 403);
    // Same-origin pages, tools and localhost still work; nothing was granted above.
    let same = c
        .get(&consents)
        .header("origin", e.uri())
        .send()
        .await
        .expect("get");
    assert_eq!(same.status().as_u16(), 200);
    let body: Value = same.json().await.expect("json");
    assert_eq!(body["consents"], json!([]));
    let port = e.http_addr().port();
    let by_name = c
        .get(format!("http://localhost:{port}/_emulator/health"))
        .send()
        .await
        .expect("get");
    assert_eq!(by_name.status().as_u16(), 200);
}

async fn device_code(c: &reqwest::Client, e: &m365_emulator::Emulator) -> (String, String) {
    let form = [
        ("client_id", TEAMS_CLIENT.to_string()),
        ("scope", "https://graph.microsoft.com/User.Read".to_string()),
    ];
    let (s, _, b) = post_form(
        c,
        &format!("{}/{CONTOSO}/oauth2/v2.0/devicecode", e.https_uri()),
        &form,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    (
        b["device_code"].as_str().expect("dc").into(),
        b["user_code"].as_str().expect("uc").into(),
    )
}

/// A failed poll (bad client authentication) used to burn an approved device code.
#[tokio::test]
async fn regression_failed_device_code_poll_does_not_burn_the_code() {
    let e = start().await;
    let c = client(&e);
    let (dc, uc) = device_code(&c, &e).await;
    let (s, b) = post_json(
        &c,
        format!("{}/_emulator/devicecode/approve", e.https_uri()),
        json!({"user_code": uc, "user": "adele@contoso.onmicrosoft.com"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let grant = "urn:ietf:params:oauth:grant-type:device_code";
    let mut form = vec![
        ("grant_type", grant.to_string()),
        ("client_id", TEAMS_CLIENT.to_string()),
        ("device_code", dc),
    ];
    form.push(("client_secret", "oops".into()));
    let (s, _, b) = post_form(&c, &token_url_v2(&e, CONTOSO), &form).await;
    assert_eq!((s, &b["error_codes"]), (401, &json!([700025])), "{b}");
    form.pop();
    let (s, _, b) = post_form(&c, &token_url_v2(&e, CONTOSO), &form).await;
    assert_eq!(s, 200, "the approved code survives a failed poll: {b}");
    let (s, _, b) = post_form(&c, &token_url_v2(&e, CONTOSO), &form).await;
    assert_eq!(
        (s, &b["error_codes"]),
        (400, &json!([54005])),
        "and is single use: {b}"
    );
}

/// A failed redemption (bad scope) used to burn the authorization code; loopback reply URLs
/// now match on any port and a path-less one gets `/` before the query.
#[tokio::test]
async fn regression_failed_redemption_keeps_the_code_and_loopback_ports_match() {
    let e = start_with(
        m365_emulator::Emulator::builder()
            .key_seed(42)
            .auto_sign_in(true),
    )
    .await;
    let c = client_no_redirects(&e);
    let authorize = format!(
        "{}/{CONTOSO}/oauth2/v2.0/authorize?client_id={TEAMS_CLIENT}&response_type=code&redirect_uri=http%3A%2F%2Flocalhost%3A53123&scope=https%3A%2F%2Fgraph.microsoft.com%2FUser.Read&login_hint=adele%40contoso.onmicrosoft.com&state=s",
        e.https_uri()
    );
    let resp = c.get(&authorize).send().await.expect("authorize");
    assert_eq!(resp.status().as_u16(), 302);
    let location = resp.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        location.starts_with("http://localhost:53123/?code="),
        "{location}"
    );
    let code = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .expect("code")
        .to_string();
    let form = |scope: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("client_id", TEAMS_CLIENT.to_string()),
            ("code", code.clone()),
            ("redirect_uri", "http://localhost:53123".to_string()),
            ("scope", scope.to_string()),
        ]
    };
    let (s, _, b) = post_form(
        &c,
        &token_url_v2(&e, CONTOSO),
        &form("https://graph.microsoft.com/NoSuch.Scope"),
    )
    .await;
    assert_eq!((s, &b["error_codes"]), (400, &json!([70011])), "{b}");
    let (s, _, b) = post_form(
        &c,
        &token_url_v2(&e, CONTOSO),
        &form("https://graph.microsoft.com/User.Read"),
    )
    .await;
    assert_eq!(s, 200, "the code survives a failed redemption: {b}");
    let (s, _, b) = post_form(
        &c,
        &token_url_v2(&e, CONTOSO),
        &form("https://graph.microsoft.com/User.Read"),
    )
    .await;
    assert_eq!((s, &b["error_codes"]), (400, &json!([54005])), "{b}");
}

/// Certificates used to be accepted outside their validity window.
#[tokio::test]
async fn regression_expired_certificate_is_refused() {
    let e = start().await;
    let c = client(&e);
    // The generated client certificates are valid 2025-01-01 … 2035-01-01.
    let (s, _) = post_json(
        &c,
        format!("{}/_emulator/clock", e.https_uri()),
        json!({"set": "2036-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(s, 200);
    let cred = AppCredential::load(&e, COLLECTOR);
    let aud = token_url_v2(&e, CONTOSO);
    let now = time::macros::datetime!(2036-01-01 00:00 UTC).unix_timestamp();
    let assertion = cred.sign(
        m365_emulator::jose::JwsAlg::RS256,
        &json!({"alg": "RS256", "typ": "JWT", "x5t": cred.x5t()}),
        &json!({"aud": aud, "iss": COLLECTOR, "sub": COLLECTOR, "jti": "x", "iat": now, "exp": now + 600}),
    );
    let (s, h, b) = post_form(&c, &aud, &assertion_form_v2(COLLECTOR, &assertion)).await;
    let v = check_error(&e, s, &h, &b, 401, 1000502);
    assert!(
        v["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("2035-01-01T00:00:00.0000000Z")),
        "{v}"
    );
}

/// The legacy admin-consent endpoint cancels with its own documented error.
#[tokio::test]
async fn regression_legacy_admin_consent_cancel_is_permission_denied() {
    let e = start().await;
    let c = client_no_redirects(&e);
    let url = format!(
        "{}/northwind.onmicrosoft.com/adminconsent?client_id={COLLECTOR}&redirect_uri=https%3A%2F%2Flocalhost%3A5001%2Fsignin&state=l",
        e.https_uri()
    );
    let page = c
        .get(&url)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("html");
    let (flow, csrf) = (hidden_field(&page, "flow"), hidden_field(&page, "csrf"));
    let login = c
        .post(format!("{}/northwind.onmicrosoft.com/login", e.https_uri()))
        .form(&[
            ("flow", flow.as_str()),
            ("csrf", csrf.as_str()),
            ("username", "admin@northwind.onmicrosoft.com"),
            ("password", "Northwind-Admin-1!"),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(login.status().as_u16(), 200);
    let cancel = c
        .post(format!(
            "{}/northwind.onmicrosoft.com/consent",
            e.https_uri()
        ))
        .form(&[
            ("flow", flow.as_str()),
            ("csrf", csrf.as_str()),
            ("decision", "cancel"),
        ])
        .send()
        .await
        .expect("cancel");
    assert_eq!(cancel.status().as_u16(), 302);
    let location = cancel.headers()["location"].to_str().expect("ascii");
    assert_eq!(
        location,
        "https://localhost:5001/signin?error=permission_denied&error_description=The%20admin%20canceled%20the%20request&state=l"
    );
}

/// Unreadable or oversized device-code requests used to be read as an empty form (900144).
#[tokio::test]
async fn regression_devicecode_bad_bodies_get_413_and_9002313() {
    let e = start().await;
    let c = client(&e);
    let url = format!("{}/{CONTOSO}/oauth2/v2.0/devicecode", e.https_uri());
    let big = format!(
        "client_id={TEAMS_CLIENT}&pad={}",
        "a".repeat(2 * 1024 * 1024)
    );
    let resp = c
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 413);
    let resp = c
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("client_id=%zz")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error_codes"], json!([9002313]));
}

/// A sign-in form can be retried after a wrong password, but never posted twice successfully.
#[tokio::test]
async fn regression_sign_in_form_retries_but_is_single_use() {
    let e = start().await;
    let c = client_no_redirects(&e);
    let url = format!(
        "{}/{CONTOSO}/oauth2/v2.0/authorize?client_id={TEAMS_CLIENT}&response_type=code&redirect_uri=http%3A%2F%2Flocalhost&scope=https%3A%2F%2Fgraph.microsoft.com%2FUser.Read",
        e.https_uri()
    );
    let page = c
        .get(&url)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("html");
    let (flow, csrf) = (hidden_field(&page, "flow"), hidden_field(&page, "csrf"));
    let login = |password: &'static str| {
        c.post(format!("{}/{CONTOSO}/login", e.https_uri()))
            .form(&[
                ("flow", flow.clone()),
                ("csrf", csrf.clone()),
                ("username", "adele@contoso.onmicrosoft.com".to_string()),
                ("password", password.to_string()),
            ])
            .send()
    };
    let wrong = login("nope").await.expect("post");
    assert_eq!(wrong.status().as_u16(), 200);
    assert!(wrong.text().await.expect("html").contains("AADSTS50126"));
    let right = login("Adele-Pass-1!").await.expect("post");
    assert_eq!(right.status().as_u16(), 302, "the retry succeeds");
    let again = login("Adele-Pass-1!").await.expect("post");
    assert_eq!(again.status().as_u16(), 400, "the form is single use");
}
