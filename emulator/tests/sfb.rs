//! The (retired) Skype for Business Trusted Application API: discovery → applications →
//! application resource with an app-only token, and the documented failures without one.

mod support;

use m365_emulator::Emulator;
use serde_json::{json, Value};
use support::*;

const SFB: &str = "https://api.skypeforbusiness.com";
const TEAMS_PHONE_SECRET: &str = "teams-phone-secret~0123456789abcdefghij";

async fn sfb_token(
    c: &reqwest::Client,
    e: &Emulator,
    client_id: &str,
    secret: &str,
    resource: &str,
) -> String {
    let (status, _, body) = post_form(
        c,
        &token_url_v1(e, CONTOSO),
        &[
            ("grant_type", "client_credentials".into()),
            ("client_id", client_id.into()),
            ("client_secret", secret.into()),
            ("resource", resource.into()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("token").to_string()
}

async fn get(
    c: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = c.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    read_json(req.send().await.expect("sent")).await
}

#[tokio::test]
async fn discovery_applications_and_application_resource() {
    let e = start().await;
    let c = client(&e);
    let (s, _, d) = get(
        &c,
        &format!("{}/platformservice/discover", e.https_uri()),
        None,
    )
    .await;
    assert_eq!(s, 200, "{d}");
    insta::assert_json_snapshot!("sfb_discover", redact_origin(&d, &e));
    let apps_url = d["_links"]["service:applications"]["href"]
        .as_str()
        .expect("applications href");
    assert_eq!(
        apps_url,
        format!("{}/platformService/v1/applications", e.https_uri())
    );

    let token = sfb_token(&c, &e, TEAMS_PHONE, TEAMS_PHONE_SECRET, SFB).await;
    let (s, _, apps) = get(
        &c,
        &format!("{apps_url}?endpointId=sip:helpdesk@contoso.com"),
        Some(&token),
    )
    .await;
    assert_eq!(s, 200, "{apps}");
    insta::assert_json_snapshot!("sfb_applications", apps);
    // Links are relative: the client reuses the base FQDN.
    let href = apps["_links"]["service:application"]["href"]
        .as_str()
        .expect("application href");
    let (s, _, app) = get(&c, &format!("{}{href}", e.https_uri()), Some(&token)).await;
    assert_eq!(s, 200, "{app}");
    insta::assert_json_snapshot!("sfb_application", app);
    assert_eq!(app["rel"], "service:application");
    assert!(
        app["_embedded"]["service:communication"]["_links"]["service:startMessaging"]["href"]
            .is_string()
    );

    // The sandbox audience of the SDK samples works too.
    let sandbox = sfb_token(
        &c,
        &e,
        TEAMS_PHONE,
        TEAMS_PHONE_SECRET,
        "https://NOAMmeetings.resources.lync.com",
    )
    .await;
    let (s, _, _) = get(
        &c,
        &format!("{apps_url}?endpointId=sip:helpdesk@contoso.com"),
        Some(&sandbox),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn failures_are_documented_401_and_403() {
    let e = start().await;
    let c = client(&e);
    let apps_url = format!("{}/platformService/v1/applications", e.https_uri());
    let (s, h, b) = get(
        &c,
        &format!("{apps_url}?endpointId=sip:helpdesk@contoso.com"),
        None,
    )
    .await;
    assert_eq!(s, 401, "{b}");
    assert!(
        header(&h, "www-authenticate").starts_with("Bearer "),
        "{h:?}"
    );
    insta::assert_json_snapshot!("sfb_error_no_token", b);

    // A Graph token has the wrong audience.
    let (_, _, graph) = post_form(
        &c,
        &token_url_v2(&e, CONTOSO),
        &[
            ("grant_type", "client_credentials".into()),
            ("client_id", TEAMS_PHONE.into()),
            ("client_secret", TEAMS_PHONE_SECRET.into()),
            ("scope", "https://graph.microsoft.com/.default".into()),
        ],
    )
    .await;
    let graph = graph["access_token"].as_str().expect("graph token");
    let (s, _, b) = get(
        &c,
        &format!("{apps_url}?endpointId=sip:helpdesk@contoso.com"),
        Some(graph),
    )
    .await;
    assert_eq!(s, 401, "{b}");
    insta::assert_json_snapshot!("sfb_error_wrong_audience", b);

    let token = sfb_token(&c, &e, TEAMS_PHONE, TEAMS_PHONE_SECRET, SFB).await;
    let (s, _, b) = get(
        &c,
        &format!("{apps_url}?endpointId=sip:someone@contoso.com"),
        Some(&token),
    )
    .await;
    assert_eq!(
        (s, b["subcode"].clone()),
        (403, json!("ApplicationNotFound")),
        "{b}"
    );
    insta::assert_json_snapshot!("sfb_error_unknown_endpoint", b);

    // The collector has no trusted endpoint (and no SfB permission).
    let collector = sfb_token(&c, &e, COLLECTOR, COLLECTOR_SECRET, SFB).await;
    let (s, _, b) = get(
        &c,
        &format!("{apps_url}?endpointId=sip:helpdesk@contoso.com"),
        Some(&collector),
    )
    .await;
    assert_eq!(
        (s, b["subcode"].clone()),
        (403, json!("ApplicationNotFound")),
        "{b}"
    );
    insta::assert_json_snapshot!("sfb_error_app_without_permission", b);

    let (s, _, b) = get(&c, &apps_url, Some(&token)).await;
    assert_eq!(s, 400, "{b}");
    insta::assert_json_snapshot!("sfb_error_missing_endpoint", b);

    let (s, _, b) = get(
        &c,
        &format!(
            "{}/platformservice/v1/applications/1?endpointId=sip:helpdesk@contoso.com",
            e.https_uri()
        ),
        Some(&token),
    )
    .await;
    assert_eq!(
        (s, b["subcode"].clone()),
        (403, json!("ApplicationNotFound")),
        "{b}"
    );
    insta::assert_json_snapshot!("sfb_error_wrong_application", b);
}
