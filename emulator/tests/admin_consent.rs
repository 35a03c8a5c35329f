//! The admin-consent endpoints: v2 `/{tenant}/v2.0/adminconsent` and the legacy
//! `/{tenant}/adminconsent`, success and error redirects, and their effect on app-only tokens.

mod support;

use std::collections::HashMap;

use serde_json::json;
use support::*;

const NORTHWIND: &str = "7bc28254-818f-4f09-a860-6fcae669c511";
const REPLY: &str = "https://localhost:5001/signin";

/// Follows sign-in and the consent page; returns the final redirect's query parameters.
async fn consent(
    c: &reqwest::Client,
    e: &m365_emulator::Emulator,
    start_url: &str,
    user: (&str, &str),
    decision: &str,
) -> HashMap<String, String> {
    let page = c
        .get(start_url)
        .send()
        .await
        .expect("authorize")
        .text()
        .await
        .expect("html");
    let (flow, csrf) = (hidden_field(&page, "flow"), hidden_field(&page, "csrf"));
    let segment = start_url
        .strip_prefix(e.https_uri())
        .and_then(|p| p.split('/').nth(1))
        .expect("tenant segment")
        .to_string();
    let login = c
        .post(format!("{}/{segment}/login", e.https_uri()))
        .form(&[
            ("flow", flow.as_str()),
            ("csrf", csrf.as_str()),
            ("username", user.0),
            ("password", user.1),
        ])
        .send()
        .await
        .expect("login");
    let location = if login.status().as_u16() == 302 {
        login.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_string()
    } else {
        let html = login.text().await.expect("html");
        assert!(
            html.contains("Review for your organization"),
            "an admin-consent page: {html}"
        );
        assert!(html.contains("Contoso Audit Collector") && html.contains("ActivityFeed.ReadDlp"));
        let resp = c
            .post(format!("{}/{segment}/consent", e.https_uri()))
            .form(&[
                ("flow", flow.as_str()),
                ("csrf", csrf.as_str()),
                ("decision", decision),
            ])
            .send()
            .await
            .expect("consent");
        assert_eq!(resp.status().as_u16(), 302);
        resp.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_string()
    };
    let (base, query) = location.split_once('?').expect("query");
    assert_eq!(base, REPLY);
    m365_emulator::http::form::parse_form(query.as_bytes())
        .expect("query")
        .fields
        .into_iter()
        .collect()
}

async fn northwind_app_only(
    c: &reqwest::Client,
    e: &m365_emulator::Emulator,
) -> (u16, serde_json::Value) {
    let (s, _, b) = post_form(
        c,
        &token_url_v2(e, NORTHWIND),
        &secret_form_v2(COLLECTOR, COLLECTOR_SECRET),
    )
    .await;
    (s, b)
}

#[tokio::test]
async fn v2_admin_consent_success_and_cancel() {
    let e = start().await;
    let c = client_no_redirects(&e);
    let url = |state: &str| {
        format!(
            "{}/organizations/v2.0/adminconsent?client_id={COLLECTOR}&scope=https%3A%2F%2Fmanage.office.com%2F.default&redirect_uri={}&state={state}",
            e.https_uri(),
            m365_emulator::http::form::encode(REPLY)
        )
    };
    let admin = ("admin@northwind.onmicrosoft.com", "Northwind-Admin-1!");

    // Cancel: access_denied, AADSTS65004, admin_consent=True, state, and no tenant.
    let q = consent(&c, &e, &url("cancel-1"), admin, "cancel").await;
    assert_eq!(q["error"], "access_denied");
    assert!(q["error_description"]
        .starts_with("AADSTS65004: User declined to consent to access the app.\r\nTrace ID: "));
    assert_eq!(
        q["error_uri"],
        format!("{}/error?code=65004", e.https_uri())
    );
    assert_eq!(q["admin_consent"], "True");
    assert_eq!(q["state"], "cancel-1");
    assert!(!q.contains_key("tenant"));
    assert_eq!(
        northwind_app_only(&c, &e).await.0,
        401,
        "nothing consented on cancel"
    );

    // Accept: admin_consent=True&tenant=…&scope=…&state=…, and app-only tokens work.
    let q = consent(&c, &e, &url("ok-1"), admin, "accept").await;
    let mut keys: Vec<&String> = q.keys().collect();
    keys.sort();
    assert_eq!(keys, ["admin_consent", "scope", "state", "tenant"]);
    assert_eq!(q["admin_consent"], "True");
    assert_eq!(q["tenant"], NORTHWIND);
    assert_eq!(q["scope"], "https://manage.office.com/.default");
    assert_eq!(q["state"], "ok-1");
    let (s, b) = northwind_app_only(&c, &e).await;
    assert_eq!(s, 200, "{b}");
    let claims = verify_token(
        b["access_token"].as_str().expect("token"),
        &jwks(&c, &e).await,
        MANAGE,
        &format!("https://sts.windows.net/{NORTHWIND}/"),
    )
    .expect("verifies")
    .1;
    assert_eq!(
        claims["roles"],
        json!([
            "ActivityFeed.Read",
            "ActivityFeed.ReadDlp",
            "ServiceHealth.Read"
        ])
    );
}

#[tokio::test]
async fn legacy_admin_consent_and_its_errors() {
    let e = start().await;
    let c = client_no_redirects(&e);
    let reply = m365_emulator::http::form::encode(REPLY);
    let legacy = format!(
        "{}/northwind.onmicrosoft.com/adminconsent?client_id={COLLECTOR}&redirect_uri={reply}&state=legacy-1",
        e.https_uri()
    );

    // A user who is not an administrator cannot consent for the organization.
    let q = consent(
        &c,
        &e,
        &legacy,
        ("nestor@northwind.onmicrosoft.com", "Nestor-Pass-1!"),
        "accept",
    )
    .await;
    assert_eq!(q["error"], "access_denied");
    assert!(q["error_description"].starts_with("AADSTS90094: "), "{q:?}");

    let q = consent(
        &c,
        &e,
        &legacy,
        ("admin@northwind.onmicrosoft.com", "Northwind-Admin-1!"),
        "accept",
    )
    .await;
    let mut keys: Vec<&String> = q.keys().collect();
    keys.sort();
    assert_eq!(keys, ["admin_consent", "state", "tenant"]);
    assert_eq!(
        (
            q["tenant"].as_str(),
            q["admin_consent"].as_str(),
            q["state"].as_str()
        ),
        (NORTHWIND, "True", "legacy-1")
    );
    assert_eq!(northwind_app_only(&c, &e).await.0, 200);

    // /common cannot take admin consent ("Do not use 'common'"): an error redirect.
    let common = format!(
        "{}/common/v2.0/adminconsent?client_id={COLLECTOR}&scope=https%3A%2F%2Fmanage.office.com%2F.default&redirect_uri={reply}&state=c",
        e.https_uri()
    );
    let resp = c.get(&common).send().await.expect("get");
    assert_eq!(resp.status().as_u16(), 302);
    let location = resp.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        location.starts_with(&format!("{REPLY}?error=invalid_request&")),
        "{location}"
    );
    // An unregistered reply URL is an error page, never a redirect.
    let evil = format!(
        "{}/northwind.onmicrosoft.com/adminconsent?client_id={COLLECTOR}&redirect_uri=https%3A%2F%2Fevil.example%2F",
        e.https_uri()
    );
    let resp = c.get(&evil).send().await.expect("get");
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.headers().get("location").is_none());
    assert!(resp.text().await.expect("html").contains("AADSTS50011"));
}
