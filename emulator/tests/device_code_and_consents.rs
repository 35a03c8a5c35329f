//! The device-code flow (issue, poll, approve through the page or the admin API, errors) and
//! the consent admin API, over real sockets.

mod support;

use serde_json::{json, Value};
use support::*;

const TEAMS_CLIENT: &str = "81a839dc-b25b-4552-bb03-aa9fa33cc6a0";
const NORTHWIND: &str = "7bc28254-818f-4f09-a860-6fcae669c511";
const GRAPH: &str = "https://graph.microsoft.com";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn devicecode(c: &reqwest::Client, e: &m365_emulator::Emulator) -> Value {
    let url = format!("{}/{CONTOSO}/oauth2/v2.0/devicecode", e.https_uri());
    let form = [
        ("client_id", TEAMS_CLIENT),
        (
            "scope",
            "https://graph.microsoft.com/User.Read offline_access openid",
        ),
    ];
    let (s, h, b) = post_form(c, &url, &form.map(|(k, v)| (k, v.to_string()))).await;
    assert_eq!(s, 200, "{b}");
    assert_token_headers(&h);
    b
}

async fn poll(c: &reqwest::Client, e: &m365_emulator::Emulator, device_code: &str) -> (u16, Value) {
    let form = [
        ("grant_type", DEVICE_GRANT),
        ("client_id", TEAMS_CLIENT),
        ("device_code", device_code),
    ];
    let (s, _, b) = post_form(
        c,
        &token_url_v2(e, CONTOSO),
        &form.map(|(k, v)| (k, v.to_string())),
    )
    .await;
    (s, b)
}

async fn advance(c: &reqwest::Client, e: &m365_emulator::Emulator, seconds: u64) {
    let resp = c
        .post(format!("{}/_emulator/clock", e.https_uri()))
        .json(&json!({"advance_seconds": seconds}))
        .send()
        .await
        .expect("clock");
    assert_eq!(resp.status().as_u16(), 200);
}

/// The claims of a v1 access token, verified independently against the JWKS.
fn verified(token: &str, jwks: &Value, aud: &str, tenant: &str) -> Value {
    let iss = format!("https://sts.windows.net/{tenant}/");
    verify_token(token, jwks, aud, &iss)
        .expect("token verifies")
        .1
}

#[tokio::test]
async fn device_code_is_approved_through_the_admin_api_and_polled_to_a_token() {
    let e = start().await;
    let c = client(&e);
    let issued = devicecode(&c, &e).await;
    let mut shape = redact_origin(&issued, &e);
    let user_code = issued["user_code"].as_str().expect("user_code").to_string();
    let device_code = issued["device_code"]
        .as_str()
        .expect("device_code")
        .to_string();
    assert_eq!(user_code.len(), 9);
    assert!(issued["message"]
        .as_str()
        .is_some_and(|m| m.contains(&user_code)));
    shape["user_code"] = json!("[user_code]");
    shape["device_code"] = json!("[device_code]");
    shape["message"] = json!(shape["message"]
        .as_str()
        .unwrap_or_default()
        .replace(&user_code, "[user_code]"));
    insta::assert_json_snapshot!("devicecode_v2_response", shape);

    let (s, b) = poll(&c, &e, &device_code).await;
    assert_eq!(
        (s, &b["error"]),
        (400, &json!("authorization_pending")),
        "{b}"
    );
    assert_eq!(b["error_codes"], json!([70016]));
    let (s, b) = poll(&c, &e, &device_code).await;
    assert_eq!(
        (s, &b["error"]),
        (400, &json!("slow_down")),
        "polled again within the interval: {b}"
    );

    let approve = format!("{}/_emulator/devicecode/approve", e.https_uri());
    let bad = c
        .post(&approve)
        .json(&json!({"user_code": user_code}))
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status().as_u16(), 400, "approving needs a user");
    let unknown = c
        .post(&approve)
        .json(&json!({"user_code": "NOPE", "user": "adele@contoso.onmicrosoft.com"}))
        .send()
        .await
        .expect("post");
    assert_eq!(unknown.status().as_u16(), 400);
    let ok = c
        .post(&approve)
        .json(&json!({"user_code": user_code.to_lowercase(), "user": "adele@contoso.onmicrosoft.com"}))
        .send()
        .await
        .expect("post");
    assert_eq!(ok.status().as_u16(), 200);

    advance(&c, &e, 6).await;
    let (s, b) = poll(&c, &e, &device_code).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["expires_in"], 3599);
    assert!(b["refresh_token"].as_str().is_some() && b["id_token"].as_str().is_some());
    let jwks = jwks(&c, &e).await;
    let claims = verified(
        b["access_token"].as_str().expect("token"),
        &jwks,
        GRAPH,
        CONTOSO,
    );
    assert_eq!(claims["upn"], "adele@contoso.onmicrosoft.com");
    assert_eq!(claims["appid"], TEAMS_CLIENT);
    assert_eq!(claims["appidacr"], "0", "a public client");
    assert!(claims["scp"]
        .as_str()
        .is_some_and(|s| s.split(' ').any(|x| x == "User.Read")));

    advance(&c, &e, 6).await;
    let (s, b) = poll(&c, &e, &device_code).await;
    assert_eq!(
        (s, &b["error_codes"]),
        (400, &json!([54005])),
        "a device code is single use: {b}"
    );
    let (s, b) = poll(&c, &e, "not-a-device-code").await;
    assert_eq!((s, &b["error_codes"]), (400, &json!([70000])), "{b}");
}

#[tokio::test]
async fn device_code_expires_declines_and_v1_uses_strings() {
    let e = start().await;
    let c = client(&e);
    let expired = devicecode(&c, &e).await;
    advance(&c, &e, 15 * 60 + 1).await;
    let (s, b) = poll(&c, &e, expired["device_code"].as_str().expect("dc")).await;
    assert_eq!((s, &b["error"]), (400, &json!("expired_token")), "{b}");
    assert_eq!(b["error_codes"], json!([70020]));

    let declined = devicecode(&c, &e).await;
    let resp = c
        .post(format!("{}/_emulator/devicecode/approve", e.https_uri()))
        .json(&json!({"user_code": declined["user_code"], "decision": "decline"}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    let (s, b) = poll(&c, &e, declined["device_code"].as_str().expect("dc")).await;
    assert_eq!(
        (s, &b["error"]),
        (400, &json!("authorization_declined")),
        "{b}"
    );

    let url = format!("{}/{CONTOSO}/oauth2/devicecode", e.https_uri());
    let form = [
        ("client_id", TEAMS_CLIENT.to_string()),
        ("resource", "https://graph.microsoft.com".to_string()),
    ];
    let (s, _, v1) = post_form(&c, &url, &form).await;
    assert_eq!(s, 200, "{v1}");
    assert_eq!(v1["expires_in"], "900");
    assert_eq!(v1["interval"], "5");
    assert!(v1["verification_url"]
        .as_str()
        .is_some_and(|u| u.ends_with("/devicelogin")));
    let (s, h, b) = post_form(&c, &url, &[("client_id", TEAMS_CLIENT.to_string())]).await;
    let v = check_error(&e, s, &h, &b, 400, 900144);
    insta::assert_json_snapshot!("devicecode_v1_missing_resource", v);
}

#[tokio::test]
async fn device_code_is_approved_through_the_pages() {
    let e = start().await;
    let c = client(&e);
    let issued = devicecode(&c, &e).await;
    let entry = c
        .get(format!("{}/devicelogin", e.https_uri()))
        .send()
        .await
        .expect("get");
    assert_eq!(entry.status().as_u16(), 200);
    assert!(entry.text().await.expect("html").contains("Enter code"));
    let wrong = c
        .post(format!("{}/devicelogin", e.https_uri()))
        .form(&[("otc", "WRONGCODE")])
        .send()
        .await
        .expect("post");
    assert!(wrong
        .text()
        .await
        .expect("html")
        .contains("That code didn&#39;t work"));
    let sign_in = c
        .post(format!("{}/devicelogin", e.https_uri()))
        .form(&[("otc", issued["user_code"].as_str().expect("uc"))])
        .send()
        .await
        .expect("post")
        .text()
        .await
        .expect("html");
    let (flow, csrf) = (
        hidden_field(&sign_in, "flow"),
        hidden_field(&sign_in, "csrf"),
    );
    let done = c
        .post(format!("{}/{CONTOSO}/login", e.https_uri()))
        .form(&[
            ("flow", flow.as_str()),
            ("csrf", csrf.as_str()),
            ("username", "megan@contoso.onmicrosoft.com"),
            ("password", "Megan-Pass-1!"),
        ])
        .send()
        .await
        .expect("post")
        .text()
        .await
        .expect("html");
    assert!(done.contains("You're signed in"), "{done}");
    let (s, b) = poll(&c, &e, issued["device_code"].as_str().expect("dc")).await;
    assert_eq!(s, 200, "{b}");
    let claims = verified(
        b["access_token"].as_str().expect("token"),
        &jwks(&c, &e).await,
        GRAPH,
        CONTOSO,
    );
    assert_eq!(claims["upn"], "megan@contoso.onmicrosoft.com");
}

async fn collector_in_northwind(c: &reqwest::Client, e: &m365_emulator::Emulator) -> (u16, Value) {
    let form = [
        ("grant_type", "client_credentials".to_string()),
        ("client_id", COLLECTOR.to_string()),
        ("client_secret", COLLECTOR_SECRET.to_string()),
        ("resource", MANAGE.to_string()),
    ];
    let (s, _, b) = post_form(c, &token_url_v1(e, NORTHWIND), &form).await;
    (s, b)
}

#[tokio::test]
async fn consent_admin_api_grants_lists_and_revokes() {
    let e = start().await;
    let c = client(&e);
    let base = format!(
        "{}/_emulator/tenants/northwind.onmicrosoft.com/consents",
        e.https_uri()
    );
    let (s, b) = collector_in_northwind(&c, &e).await;
    assert_eq!((s, &b["error_codes"]), (401, &json!([700016])), "{b}");

    // Invalid requests change nothing.
    let bad = [
        json!({"client_id": COLLECTOR, "app_role_grants": {MANAGE: ["Nope"]}}),
        json!({"client_id": COLLECTOR, "delegated_grants": {"https://unknown.example": ["x"]}}),
        json!({"client_id": COLLECTOR, "user": "nestor@northwind.onmicrosoft.com", "app_role_grants": {MANAGE: ["ActivityFeed.Read"]}}),
        json!({"client_id": TEAMS_PHONE}),
        json!({"client_id": "not-a-guid"}),
        json!({"client_id": COLLECTOR, "user": "nobody@northwind.onmicrosoft.com"}),
    ];
    for body in bad {
        let resp = c.post(&base).json(&body).send().await.expect("post");
        assert_eq!(resp.status().as_u16(), 400, "{body}");
        let err: Value = resp.json().await.expect("json");
        assert!(err["error"]["message"].as_str().is_some(), "{err}");
    }
    let (_, _, list) = get_json(&c, &base).await;
    assert_eq!(list["consents"], json!([]));
    let missing = c
        .get(format!(
            "{}/_emulator/tenants/nowhere.example.com/consents",
            e.https_uri()
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status().as_u16(), 404);

    // Tenant-wide consent with what the registration requires.
    let resp = c
        .post(&base)
        .json(&json!({"client_id": COLLECTOR}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    let granted: Value = resp.json().await.expect("json");
    assert_eq!(granted["consents"][0]["client_id"], COLLECTOR);
    assert_eq!(
        granted["consents"][0]["app_role_grants"][MANAGE],
        json!([
            "ActivityFeed.Read",
            "ActivityFeed.ReadDlp",
            "ServiceHealth.Read"
        ])
    );
    let (s, b) = collector_in_northwind(&c, &e).await;
    assert_eq!(s, 200, "{b}");
    let claims = verified(
        b["access_token"].as_str().expect("token"),
        &jwks(&c, &e).await,
        MANAGE,
        NORTHWIND,
    );
    assert_eq!(claims["tid"], NORTHWIND);
    assert_eq!(
        claims["roles"],
        json!([
            "ActivityFeed.Read",
            "ActivityFeed.ReadDlp",
            "ServiceHealth.Read"
        ])
    );

    // A single user's delegated consent is listed with the user.
    let resp = c
        .post(&base)
        .json(&json!({"client_id": COLLECTOR, "user": "nestor@northwind.onmicrosoft.com", "delegated_grants": {MANAGE: ["ActivityFeed.Read"]}}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    let (_, _, list) = get_json(&c, &base).await;
    assert_eq!(
        list["consents"][0]["user_consents"][0]["scopes"][MANAGE],
        json!(["ActivityFeed.Read"])
    );

    // Revoke: back to 700016; revoking again is a 404.
    let url = format!("{base}/{COLLECTOR}");
    assert_eq!(
        c.delete(&url)
            .send()
            .await
            .expect("delete")
            .status()
            .as_u16(),
        204
    );
    let (s, b) = collector_in_northwind(&c, &e).await;
    assert_eq!((s, &b["error_codes"]), (401, &json!([700016])), "{b}");
    assert_eq!(
        c.delete(&url)
            .send()
            .await
            .expect("delete")
            .status()
            .as_u16(),
        404
    );
}
