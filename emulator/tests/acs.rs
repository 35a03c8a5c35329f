//! Azure Communication Services over HTTPS, authentication and assignments: HMAC-SHA256 and
//! Entra bearer authentication, the Teams Phone extensibility assignment lifecycle of seed 001,
//! every authentication and validation error (snapshotted), resource selection by host, and
//! the `[server.acs]` knobs. The Identity API and the exchanges are in acs_identity.rs.

mod support;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use m365_emulator::acs::hmac::{self, ConnectionString};
use m365_emulator::world::World;
use m365_emulator::Emulator;
use reqwest::Method;
use serde_json::{json, Value};

use support::acs::*;
use support::{client, read_json, start, start_with, CONTOSO, TEAMS_PHONE};

/// Seed 001's lifecycle with `call` doing the authentication.
async fn lifecycle<F, Fut>(call: F, label: &str)
where
    F: Fn(Method, String, Value) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let path = assignment_path(CONTOSO, ADELE_OID);
    let body = json!({"principalType": "user", "clientIds": [TEAMS_CLIENT]});
    let (s, _, created) = call(Method::PUT, path.clone(), body.clone()).await;
    assert_eq!(s, 201, "{label}: {created}");
    let (s, _, replaced) = call(Method::PUT, path.clone(), body).await;
    assert_eq!(s, 200, "{label}: {replaced}");
    assert_eq!(created, replaced);
    let (s, _, got) = call(Method::GET, path.clone(), Value::Null).await;
    assert_eq!(s, 200, "{label}: {got}");
    assert_eq!(got, created);
    let (s, _, gone) = call(Method::DELETE, path.clone(), Value::Null).await;
    assert_eq!((s, gone), (204, Value::Null), "{label}");
    let answer = call(Method::GET, path, Value::Null).await;
    acs_error(&answer, 404, "NotFound");
    insta::assert_json_snapshot!("assignment_created", created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_lifecycle_with_hmac_from_the_connection_string() {
    let em = start().await;
    let acs = Acs::new(&em);
    lifecycle(
        |m, p, b| {
            let (acs, em) = (&acs, &em);
            async move { acs.hmac(em, m, &p, &b).await }
        },
        "hmac",
    )
    .await;

    // A resource account, as the docs spell it, and the tenant-less short form.
    let short =
        format!("/access/teamsExtension/assignments/{MAINLINE_OID}?api-version=2025-03-02-preview");
    let (s, _, b) = acs
        .hmac(
            &em,
            Method::PUT,
            &short,
            &json!({"principalType": "teamsResourceAccount"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    insta::assert_json_snapshot!("assignment_resource_account", b);
    let (s, _, long) = acs
        .hmac(
            &em,
            Method::GET,
            &assignment_path(CONTOSO, MAINLINE_OID),
            &Value::Null,
        )
        .await;
    assert_eq!((s, &long), (200, &b));

    // PATCH is a JSON merge patch.
    let (s, _, p) = acs
        .hmac(
            &em,
            Method::PATCH,
            &short,
            &json!({"principalType": "resourceAccount", "clientIds": [TEAMS_PHONE]}),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["principalType"], "resourceAccount");
    let (s, _, p) = acs
        .hmac(&em, Method::PATCH, &short, &json!({"clientIds": null}))
        .await;
    assert_eq!(s, 200, "{p}");
    insta::assert_json_snapshot!("assignment_patched", p);

    // The admin listing.
    let list = admin_list(&acs, "assignments").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    insta::assert_json_snapshot!("admin_assignments", list);

    // The journal names the operation.
    let ops: Vec<String> = em
        .journal()
        .query(&Default::default())
        .iter()
        .map(|e| e.operation.clone())
        .collect();
    assert!(
        ops.iter().filter(|o| *o == "acs.assignments").count() >= 8,
        "{ops:?}"
    );

    // DELETE is idempotent; reset clears assignments.
    let (s, _, _) = acs
        .hmac(
            &em,
            Method::DELETE,
            &assignment_path(CONTOSO, MEGAN_OID),
            &Value::Null,
        )
        .await;
    assert_eq!(s, 204);
    em.core().reset();
    assert_eq!(admin_list(&acs, "assignments").await, json!([]));
    em.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_lifecycle_with_entra_app_tokens() {
    let em = start().await;
    let acs = Acs::new(&em);
    let http = client(&em);

    // The Teams-phone backend with the scope the SDKs send (double slash). Its token is valid
    // but the app holds no Communication.Manage role on the resource yet.
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", TEAMS_PHONE),
        ("client_secret", TEAMS_PHONE_SECRET),
        ("scope", "https://communication.azure.com//.default"),
    ];
    let token = entra_token(&http, &em, &form).await;
    let answer = acs
        .bearer(
            Method::GET,
            &assignment_path(CONTOSO, ADELE_OID),
            &Value::Null,
            &token,
        )
        .await;
    insta::assert_json_snapshot!(
        "error_bearer_without_role",
        acs_error(&answer, 403, "Forbidden")
    );

    // Grant the role (the emulator's stand-in for an Azure RBAC assignment) and go again.
    let resp = http
        .post(format!("{}/_emulator/tenants/{CONTOSO}/consents", em.https_uri()))
        .json(&json!({"client_id": TEAMS_PHONE, "app_role_grants": {"https://communication.azure.com": ["Communication.Manage"]}}))
        .send()
        .await
        .expect("consent");
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    let token = entra_token(&http, &em, &form).await;
    assert_eq!(claims_of(&token)["roles"], json!(["Communication.Manage"]));
    lifecycle(
        |m, p, b| {
            let (acs, t) = (&acs, &token);
            async move { acs.bearer(m, &p, &b, t).await }
        },
        "app token",
    )
    .await;

    // A managed-identity token (App Service endpoint) works the same way.
    let ready = em.ready();
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/msi/token?api-version=2019-08-01&resource=https://communication.azure.com",
            em.uri()
        ))
        .header("X-IDENTITY-HEADER", &ready.identity_header)
        .send()
        .await
        .expect("msi");
    let (s, _, b) = read_json(resp).await;
    assert_eq!(s, 200, "{b}");
    let mi = b["access_token"].as_str().expect("token").to_string();
    let (s, _, b) = acs
        .bearer(
            Method::POST,
            "/identities?api-version=2023-10-01",
            &Value::Null,
            &mi,
        )
        .await;
    assert_eq!(s, 201, "{b}");

    // Bearer failures.
    let answer = acs
        .bearer(
            Method::GET,
            &assignment_path(CONTOSO, ADELE_OID),
            &Value::Null,
            "not.a.jwt",
        )
        .await;
    insta::assert_json_snapshot!("error_bearer_malformed", acs_error(&answer, 401, "Denied"));
    let graph = entra_token(
        &http,
        &em,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", TEAMS_PHONE),
            ("client_secret", TEAMS_PHONE_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    let answer = acs
        .bearer(
            Method::GET,
            &assignment_path(CONTOSO, ADELE_OID),
            &Value::Null,
            &graph,
        )
        .await;
    insta::assert_json_snapshot!(
        "error_bearer_wrong_audience",
        acs_error(&answer, 401, "Denied")
    );
    em.clock().advance(time::Duration::hours(3));
    let answer = acs
        .bearer(
            Method::GET,
            &assignment_path(CONTOSO, ADELE_OID),
            &Value::Null,
            &token,
        )
        .await;
    let body = acs_error(&answer, 401, "Denied");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{body}"
    );
    em.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_failures_are_denied_precisely_and_change_nothing() {
    let em = start().await;
    let acs = Acs::new(&em);
    // Every signature below is made at the same emulator time.
    em.clock().freeze();
    let path = assignment_path(CONTOSO, ADELE_OID);
    let body = json!({"principalType": "user", "clientIds": [TEAMS_CLIENT]})
        .to_string()
        .into_bytes();
    let good = acs.signed_headers(&em, &acs.conn.access_key, &Method::PUT, &path, &body);
    let with = |name: &str, value: &str| -> Vec<(&str, String)> {
        good.iter()
            .map(|(k, v)| {
                (
                    *k,
                    if *k == name {
                        value.to_string()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    };
    let without = |name: &str| -> Vec<(&str, String)> {
        good.iter().filter(|(k, _)| *k != name).cloned().collect()
    };
    let put = |headers: Vec<(&'static str, String)>, b: Vec<u8>| {
        let (acs, path) = (&acs, &path);
        async move { acs.send(Method::PUT, path, &b, &headers).await }
    };

    let cases: Vec<(&str, Headers, Vec<u8>)> = vec![
        ("no_authorization", without("authorization"), body.clone()),
        (
            "malformed_header",
            with("authorization", "HMAC-SHA256 Signature=abc"),
            body.clone(),
        ),
        (
            "wrong_scheme",
            with("authorization", "SharedKey abc"),
            body.clone(),
        ),
        (
            "signature_not_base64",
            with("authorization", &format!("{SIGNED}***")),
            body.clone(),
        ),
        (
            "signature_wrong_length",
            with("authorization", &format!("{SIGNED}AAAA")),
            body.clone(),
        ),
        ("missing_date", without("x-ms-date"), body.clone()),
        (
            "date_in_iso_format",
            with("x-ms-date", "2026-11-21T23:36:09Z"),
            body.clone(),
        ),
        (
            "missing_content_hash",
            without("x-ms-content-sha256"),
            body.clone(),
        ),
        (
            "body_hash_mismatch",
            good.clone(),
            b"{\"principalType\":\"user\"}".to_vec(),
        ),
        (
            "bad_signature",
            with(
                "authorization",
                &format!("{SIGNED}{}", STANDARD.encode([7u8; 32])),
            ),
            body.clone(),
        ),
    ];
    for (name, headers, b) in cases {
        let answer = put(headers, b).await;
        let v = redact_host(acs_error(&answer, 401, "Denied"), &acs);
        insta::assert_json_snapshot!(format!("error_hmac_{name}"), v);
    }

    // Duplicated headers.
    let mut dup = good.clone();
    dup.push(("authorization", good[2].1.clone()));
    let answer = put(dup, body.clone()).await;
    insta::assert_json_snapshot!(
        "error_hmac_duplicate_authorization",
        acs_error(&answer, 401, "Denied")
    );
    let mut dup = good.clone();
    dup.push(("x-ms-date", good[0].1.clone()));
    insta::assert_json_snapshot!(
        "error_hmac_duplicate_date",
        acs_error(&put(dup, body.clone()).await, 401, "Denied")
    );

    // The diagnostic header shows the string to sign the emulator expected.
    let wrong_key = acs.signed_headers(&em, b"another key", &Method::PUT, &path, &body);
    let (s, h, _) = put(wrong_key, body.clone()).await;
    assert_eq!(s, 401);
    let expected = format!(
        "PUT\\n{path}\\n{};{};{}",
        good[0].1, acs.conn.host, good[1].1
    );
    assert_eq!(
        h.get(STS_HEADER).and_then(|v| v.to_str().ok()),
        Some(expected.as_str())
    );
    assert!(h.get("www-authenticate").is_some());

    // Signed for another path or host: refused.
    let other_path = acs.signed_headers(
        &em,
        &acs.conn.access_key,
        &Method::PUT,
        &assignment_path(CONTOSO, MEGAN_OID),
        &body,
    );
    acs_error(&put(other_path, body.clone()).await, 401, "Denied");
    let s = hmac::sign_request(
        &acs.conn.access_key,
        "PUT",
        &path,
        "contoso-acs.communication.azure.com",
        em.clock().now(),
        &body,
    );
    acs_error(
        &put(with("authorization", &s.authorization), body.clone()).await,
        401,
        "Denied",
    );

    // A stale date: the clock moves six minutes past the signature (default skew 300 s).
    let stale = acs.signed_headers(&em, &acs.conn.access_key, &Method::PUT, &path, &body);
    em.clock().advance(time::Duration::minutes(6));
    let answer = put(stale.clone(), body.clone()).await;
    insta::assert_json_snapshot!(
        "error_hmac_stale_date",
        redact_dates(acs_error(&answer, 401, "Denied"))
    );
    em.clock().advance(time::Duration::minutes(-2));
    assert_eq!(
        put(stale, body.clone()).await.0,
        201,
        "four minutes is within the skew"
    );
    let (s, _, _) = acs.hmac(&em, Method::DELETE, &path, &Value::Null).await;
    assert_eq!(s, 204);

    // Nothing was stored by the refused requests.
    assert_eq!(admin_list(&acs, "assignments").await, json!([]));

    // The secondary key is accepted too.
    let secondary = acs.signed_headers(&em, &acs.secondary, &Method::PUT, &path, &body);
    assert_eq!(put(secondary, body.clone()).await.0, 201);
    em.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_acs_errors_and_change_nothing() {
    let em = start().await;
    let acs = Acs::new(&em);
    let user = json!({"principalType": "user", "clientIds": [TEAMS_CLIENT]});
    let base = format!("/access/teamsExtension/tenants/{CONTOSO}/assignments/{ADELE_OID}");
    let cases: Vec<(&str, Method, String, Value, u16, &str)> = vec![
        ("missing_api_version", Method::PUT, base.clone(), user.clone(), 400, "MissingApiVersionParameter"),
        ("unknown_api_version", Method::PUT, format!("{base}?api-version=2023-10-01"), user.clone(), 400, "UnsupportedApiVersion"),
        ("tenant_not_guid", Method::PUT, assignment_path("contoso.onmicrosoft.com", ADELE_OID), user.clone(), 400, "ValidationError"),
        ("object_not_guid", Method::GET, assignment_path(CONTOSO, "adele"), Value::Null, 400, "ValidationError"),
        ("odd_percent_encoding", Method::GET, assignment_path(CONTOSO, "%zz%2"), Value::Null, 400, "ValidationError"),
        ("missing_principal_type", Method::PUT, assignment_path(CONTOSO, ADELE_OID), json!({"clientIds": []}), 400, "ValidationError"),
        ("unknown_principal_type", Method::PUT, assignment_path(CONTOSO, ADELE_OID), json!({"principalType": "group"}), 400, "ValidationError"),
        ("client_ids_not_guids", Method::PUT, assignment_path(CONTOSO, ADELE_OID), json!({"principalType": "user", "clientIds": ["teams"]}), 400, "ValidationError"),
        ("client_ids_not_a_list", Method::PUT, assignment_path(CONTOSO, ADELE_OID), json!({"principalType": "user", "clientIds": TEAMS_CLIENT}), 400, "ValidationError"),
        ("body_is_a_list", Method::PUT, assignment_path(CONTOSO, ADELE_OID), json!([user.clone()]), 400, "InvalidRequestBody"),
        ("patch_missing", Method::PATCH, assignment_path(CONTOSO, ADELE_OID), json!({"clientIds": null}), 404, "NotFound"),
        ("wrong_method", Method::POST, assignment_path(CONTOSO, ADELE_OID), user.clone(), 405, "MethodNotAllowed"),
        ("identity_scope_unknown", Method::POST, "/identities?api-version=2023-10-01".into(), json!({"createTokenWithScopes": ["email"]}), 400, "ValidationError"),
        ("identity_expiry_59", Method::POST, "/identities?api-version=2023-10-01".into(), json!({"createTokenWithScopes": ["chat"], "expiresInMinutes": 59}), 400, "ValidationError"),
        ("identity_expiry_1441", Method::POST, "/identities?api-version=2025-06-30".into(), json!({"createTokenWithScopes": ["chat"], "expiresInMinutes": 1441}), 400, "ValidationError"),
        ("identity_unknown", Method::POST, format!("/identities/8%3Aacs%3A{RESOURCE_ID}_00000000-0000-0000-0000-000000000000/:issueAccessToken?api-version=2023-10-01"), json!({"scopes": ["chat"]}), 404, "NotFound"),
        ("identity_not_acs", Method::DELETE, "/identities/orgid%3Aabc?api-version=2023-10-01".into(), Value::Null, 400, "ValidationError"),
        ("identity_unknown_action", Method::POST, format!("/identities/8%3Aacs%3A{RESOURCE_ID}_x/:renew?api-version=2023-10-01"), Value::Null, 404, "NotFound"),
        ("identity_api_version_missing", Method::POST, "/identities".into(), Value::Null, 400, "MissingApiVersionParameter"),
        ("exchange_unknown_action", Method::POST, "/teamsUser/:swap?api-version=2023-10-01".into(), json!({}), 404, "NotFound"),
    ];
    for (name, method, path, body, status, code) in cases {
        let answer = acs.hmac(&em, method, &path, &body).await;
        insta::assert_json_snapshot!(format!("error_{name}"), acs_error(&answer, status, code));
    }

    // Bodies that are not JSON, and a huge one.
    let path = assignment_path(CONTOSO, ADELE_OID);
    let not_json = b"principalType=user".to_vec();
    let h = acs.signed_headers(&em, &acs.conn.access_key, &Method::PUT, &path, &not_json);
    let answer = acs.send(Method::PUT, &path, &not_json, &h).await;
    insta::assert_json_snapshot!(
        "error_body_not_json",
        acs_error(&answer, 400, "InvalidRequestBody")
    );
    let huge = vec![b' '; 2 * 1024 * 1024];
    let h = acs.signed_headers(&em, &acs.conn.access_key, &Method::PUT, &path, &huge);
    let answer = acs.send(Method::PUT, &path, &huge, &h).await;
    insta::assert_json_snapshot!(
        "error_body_too_large",
        acs_error(&answer, 413, "RequestEntityTooLarge")
    );

    // An injected fault comes out in ACS's shape.
    let mut h = acs.signed_headers(&em, &acs.conn.access_key, &Method::GET, &path, b"");
    h.push(("x-m365emu-fault", "ServiceUnavailable".into()));
    let answer = acs.send(Method::GET, &path, b"", &h).await;
    insta::assert_json_snapshot!(
        "fault_service_unavailable",
        acs_error(&answer, 503, "ServiceUnavailable")
    );

    assert_eq!(admin_list(&acs, "assignments").await, json!([]));
    assert_eq!(admin_list(&acs, "identities").await, json!([]));
    em.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diagnostic_header_and_skew_are_configurable() {
    let mut world = World::default_world().expect("default world");
    world.server.acs.expected_string_to_sign_header = Some(false);
    world.server.acs.hmac_clock_skew_seconds = Some(30);
    let em = start_with(Emulator::builder().key_seed(42).world(world)).await;
    let acs = Acs::new(&em);
    let path = assignment_path(CONTOSO, ADELE_OID);
    em.clock().freeze();
    let h = acs.signed_headers(&em, b"wrong", &Method::GET, &path, b"");
    let (s, headers, _) = acs.send(Method::GET, &path, b"", &h).await;
    assert_eq!(s, 401);
    assert!(headers.get(STS_HEADER).is_none());
    let h = acs.signed_headers(&em, &acs.conn.access_key, &Method::GET, &path, b"");
    em.clock().advance(time::Duration::seconds(31));
    acs_error(&acs.send(Method::GET, &path, b"", &h).await, 401, "Denied");
    em.clock().advance(time::Duration::seconds(-2));
    acs_error(
        &acs.send(Method::GET, &path, b"", &h).await,
        404,
        "NotFound",
    );
    em.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_prints_the_connection_string() {
    let em = start().await;
    let exports = em.ready().env_exports();
    let line = exports
        .lines()
        .find(|l| l.starts_with("export COMMUNICATION_SERVICES_CONNECTION_STRING="))
        .expect("the connection string is exported");
    let value = line
        .split_once('=')
        .map(|(_, v)| v.trim_matches('\''))
        .expect("value");
    let conn = ConnectionString::parse(value).expect("parses");
    assert_eq!(conn.endpoint, em.https_uri());
    em.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_header_selects_the_resource() {
    let fabrikam_id = "9b1d7f36-1c55-4d0e-8a43-54f2f0a6e2c1";
    let fabrikam_key = STANDARD.encode([0x5a_u8; 32]);
    let mut world = World::default_world().expect("default world");
    world.acs.push(m365_emulator::world::AcsResource {
        name: "fabrikam-acs".into(),
        host: "fabrikam-acs.communication.azure.com".into(),
        resource_id: fabrikam_id.parse().expect("GUID"),
        tenant: "fabrikam.onmicrosoft.com".into(),
        primary_key: fabrikam_key.clone(),
        secondary_key: STANDARD.encode([0xa5_u8; 32]),
    });
    let em = start_with(Emulator::builder().key_seed(42).world(world)).await;
    em.clock().freeze();
    let contoso = Acs::new(&em);
    // The real host name, resolved to the emulator: the TLS leaf carries the ACS hosts.
    let host = "fabrikam-acs.communication.azure.com";
    let ca = reqwest::Certificate::from_pem(em.ca_pem().as_bytes()).expect("CA");
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve(host, em.https_addr())
        .no_proxy()
        .timeout(support::HTTP_TIMEOUT)
        .build()
        .expect("client");
    let authority = format!("{host}:{}", em.https_addr().port());
    let target = "/identities?api-version=2023-10-01";
    let create = |key: Vec<u8>| {
        let (http, authority) = (&http, &authority);
        let s = hmac::sign_request(&key, "POST", target, authority, em.clock().now(), b"");
        async move {
            let resp = http
                .post(format!("https://{authority}{target}"))
                .header("x-ms-date", s.x_ms_date)
                .header("x-ms-content-sha256", s.x_ms_content_sha256)
                .header("authorization", s.authorization)
                .send()
                .await
                .expect("request");
            read_json(resp).await
        }
    };
    let (s, _, b) = create(STANDARD.decode(&fabrikam_key).expect("key")).await;
    assert_eq!(s, 201, "{b}");
    let id = b["identity"]["id"].as_str().expect("id");
    assert!(id.starts_with(&format!("8:acs:{fabrikam_id}_")), "{id}");
    // Contoso's key does not open Fabrikam's resource.
    let (s, _, b) = create(contoso.conn.access_key.clone()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("Denied")),
        "{b}"
    );
    // An address without a known host name falls back to the first resource (Contoso).
    let (s, _, b) = contoso.hmac(&em, Method::POST, target, &Value::Null).await;
    assert_eq!(s, 201, "{b}");
    assert!(
        b["identity"]["id"]
            .as_str()
            .is_some_and(|i| i.starts_with(&format!("8:acs:{RESOURCE_ID}_"))),
        "{b}"
    );
    em.shutdown().await;
}
