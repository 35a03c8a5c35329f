//! Azure Communication Services over HTTPS: HMAC-SHA256 and Entra bearer authentication, the
//! Teams Phone extensibility assignment lifecycle of seed 001, the Identity API, both token
//! exchanges, every error (snapshotted), and the unmodified Python SDK
//! (tests/clients/acs_identity.py; run with `scripts/test.sh --test acs`).

mod support;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use m365_emulator::acs::hmac::{self, ConnectionString};
use m365_emulator::world::World;
use m365_emulator::Emulator;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

use support::python::{test_python, Script};
use support::{client, read_json, start, start_with, CONTOSO, TEAMS_PHONE};

const ADELE: &str = "adele@contoso.onmicrosoft.com";
const ADELE_OID: &str = "61927486-f404-463f-b72a-7aa7c4ad5433";
const ADELE_PASSWORD: &str = "Adele-Pass-1!";
const MEGAN_OID: &str = "ef262982-0ab4-4084-ad7c-898958a8f730";
const MAINLINE_OID: &str = "7d14015f-af3b-4f7d-af97-cdeba78b70eb";
const TEAMS_CLIENT: &str = "81a839dc-b25b-4552-bb03-aa9fa33cc6a0";
const TEAMS_PHONE_SECRET: &str = "teams-phone-secret~0123456789abcdefghij";
const RESOURCE_ID: &str = "40bfc917-2b6d-4d1f-ab8d-1ed911d306af";
const TPE: &str = "2025-06-30";
const SIGNED: &str = "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=";
const STS_HEADER: &str = "x-m365emu-expected-string-to-sign";

fn assignment_path(tenant: &str, object: &str) -> String {
    format!("/access/teamsExtension/tenants/{tenant}/assignments/{object}?api-version={TPE}")
}

/// An ACS client built from the ready file's connection string.
struct Acs {
    http: reqwest::Client,
    base: String,
    conn: ConnectionString,
    secondary: Vec<u8>,
}

/// Request headers as (name, value) pairs.
type Headers = Vec<(&'static str, String)>;

/// A response: status, headers, JSON body (`Null` when empty).
type Answer = (u16, HeaderMap, Value);

impl Acs {
    fn new(em: &Emulator) -> Acs {
        let ready = &em.ready().acs[0];
        let conn = ConnectionString::parse(&ready.connection_string).expect("connection string");
        assert_eq!(format!("{}/", conn.endpoint), ready.endpoint);
        let secondary = STANDARD
            .decode(&em.core().initial_directory().world.acs[0].secondary_key)
            .expect("base64");
        Acs {
            http: client(em),
            base: em.https_uri().to_string(),
            conn,
            secondary,
        }
    }

    async fn send(
        &self,
        method: Method,
        target: &str,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> Answer {
        let mut req = self
            .http
            .request(method, format!("{}{target}", self.base))
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {status} {text:?}"))
        };
        (status, headers, body)
    }

    /// HMAC headers for `target` signed with `key` at the emulator's time.
    fn signed_headers(
        &self,
        em: &Emulator,
        key: &[u8],
        method: &Method,
        target: &str,
        body: &[u8],
    ) -> Vec<(&'static str, String)> {
        let s = hmac::sign_request(
            key,
            method.as_str(),
            target,
            &self.conn.host,
            em.clock().now(),
            body,
        );
        vec![
            ("x-ms-date", s.x_ms_date),
            ("x-ms-content-sha256", s.x_ms_content_sha256),
            ("authorization", s.authorization),
            ("content-type", "application/json".into()),
        ]
    }

    async fn hmac(&self, em: &Emulator, method: Method, target: &str, body: &Value) -> Answer {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let h = self.signed_headers(em, &self.conn.access_key, &method, target, &bytes);
        self.send(method, target, &bytes, &h).await
    }

    async fn bearer(&self, method: Method, target: &str, body: &Value, token: &str) -> Answer {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let h = [
            ("authorization", format!("Bearer {token}")),
            ("content-type", "application/json".into()),
        ];
        self.send(method, target, &bytes, &h).await
    }
}

/// Checks the `CommunicationErrorResponse` shape and status; returns the body for a snapshot.
fn acs_error(answer: &Answer, status: u16, code: &str) -> Value {
    let (s, h, b) = answer;
    assert_eq!(*s, status, "{b}");
    assert_eq!(b["error"]["code"], code, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{b}"
    );
    let keys: Vec<&String> = b["error"]
        .as_object()
        .expect("error object")
        .keys()
        .collect();
    assert!(
        keys.iter()
            .all(|k| ["code", "message", "target"].contains(&k.as_str())),
        "{b}"
    );
    assert!(
        h.get("content-type")
            .is_some_and(|v| v == "application/json"),
        "{h:?}"
    );
    b.clone()
}

/// A v2 client-credentials or password-grant token.
async fn entra_token(http: &reqwest::Client, em: &Emulator, form: &[(&str, &str)]) -> String {
    let resp = http
        .post(format!("{}/{CONTOSO}/oauth2/v2.0/token", em.https_uri()))
        .form(form)
        .send()
        .await
        .expect("token request");
    let (s, _, b) = read_json(resp).await;
    assert_eq!(s, 200, "{b}");
    b["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

async fn adele_token(http: &reqwest::Client, em: &Emulator, scope: &str) -> String {
    entra_token(
        http,
        em,
        &[
            ("grant_type", "password"),
            ("client_id", TEAMS_CLIENT),
            ("username", ADELE),
            ("password", ADELE_PASSWORD),
            ("scope", scope),
        ],
    )
    .await
}

fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("b64"),
    )
    .expect("json")
}

async fn introspect(acs: &Acs, token: &str) -> Value {
    let resp = acs
        .http
        .post(format!("{}/_emulator/acs/tokens/introspect", acs.base))
        .json(&json!({ "token": token }))
        .send()
        .await
        .expect("introspect");
    read_json(resp).await.2
}

async fn admin_list(acs: &Acs, what: &str) -> Value {
    let resp = acs
        .http
        .get(format!("{}/_emulator/acs/{what}", acs.base))
        .send()
        .await
        .expect("admin");
    read_json(resp).await.2["value"].clone()
}

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

/// Replaces the emulator's authority (its port varies) by `emulator`.
fn redact_host(v: Value, acs: &Acs) -> Value {
    serde_json::from_str(&v.to_string().replace(&acs.conn.host, "emulator")).expect("JSON")
}

/// Replaces RFC 1123 dates in a message by a placeholder.
fn redact_dates(mut v: Value) -> Value {
    if let Some(m) = v["error"]["message"].as_str() {
        let mut out = String::new();
        for (i, part) in m.split('\'').enumerate() {
            if i > 0 {
                out.push('\'');
            }
            out.push_str(if part.ends_with(" GMT") {
                "[date]"
            } else {
                part
            });
        }
        v["error"]["message"] = json!(out);
    }
    v
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

/// Verifies an ACS token against the published ACS key with jsonwebtoken.
async fn verify_acs_token(acs: &Acs, token: &str) -> Value {
    let resp = acs
        .http
        .get(format!("{}/_emulator/acs/keys", acs.base))
        .send()
        .await
        .expect("keys");
    let jwks = read_json(resp).await.2;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).expect("jwk");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("key");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v.validate_exp = false;
    let data = jsonwebtoken::decode::<Value>(token, &key, &v).expect("signature verifies");
    assert_eq!(data.header.kid.as_deref(), jwks["keys"][0]["kid"].as_str());
    data.claims
}

/// The claims of an ACS token with the volatile values replaced.
fn redact_acs_claims(mut c: Value) -> Value {
    let iat = c["iat"].as_i64().expect("iat");
    assert_eq!(c["csi"], iat.to_string());
    let lifetime = c["exp"].as_i64().expect("exp") - iat;
    c["iat"] = json!("[iat]");
    c["csi"] = json!("[iat]");
    c["exp"] = json!(format!("[iat + {lifetime}]"));
    if let Some(id) = c["skypeid"].as_str() {
        if let Some((prefix, _)) = id.rsplit_once('_') {
            if prefix == format!("acs:{RESOURCE_ID}") {
                c["skypeid"] = json!(format!("{prefix}_[suffix]"));
            }
        }
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_api_create_issue_revoke_delete() {
    let em = start().await;
    let acs = Acs::new(&em);
    for version in ["2023-10-01", "2025-06-30"] {
        let (s, _, plain) = acs
            .hmac(
                &em,
                Method::POST,
                &format!("/identities?api-version={version}"),
                &Value::Null,
            )
            .await;
        assert_eq!(s, 201, "{plain}");
        assert_eq!(plain.as_object().map(|o| o.len()), Some(1), "{plain}");
        let id = plain["identity"]["id"].as_str().expect("id");
        assert!(id.starts_with(&format!("8:acs:{RESOURCE_ID}_")), "{id}");
    }
    let (s, _, created) = acs
        .hmac(
            &em,
            Method::POST,
            "/identities?api-version=2023-10-01",
            &json!({"createTokenWithScopes": ["chat", "voip"], "expiresInMinutes": 60}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["identity"]["id"].as_str().expect("id").to_string();
    let token = created["accessToken"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let claims = verify_acs_token(&acs, &token).await;
    assert_eq!(claims["skypeid"], id.trim_start_matches("8:"));
    insta::assert_json_snapshot!("identity_token_claims", redact_acs_claims(claims.clone()));
    let expires_on = created["accessToken"]["expiresOn"]
        .as_str()
        .expect("expiresOn");
    let parsed =
        time::OffsetDateTime::parse(expires_on, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
    assert_eq!(
        parsed.unix_timestamp(),
        claims["exp"].as_i64().expect("exp")
    );
    assert!(expires_on.ends_with(".0000000+00:00"), "{expires_on}");
    let mut shape = created.clone();
    shape["identity"]["id"] = json!("[id]");
    shape["accessToken"]["token"] = json!("[token]");
    shape["accessToken"]["expiresOn"] = json!("[expiresOn]");
    insta::assert_json_snapshot!("identity_created_with_token", shape);

    // Issue: the percent-encoded id, as the SDKs send it.
    let enc = id.replace(':', "%3A");
    let issue = format!("/identities/{enc}/:issueAccessToken?api-version=2023-10-01");
    let (s, _, issued) = acs
        .hmac(&em, Method::POST, &issue, &json!({"scopes": ["voip"]}))
        .await;
    assert_eq!(s, 200, "{issued}");
    assert_eq!(issued.as_object().map(|o| o.len()), Some(2), "{issued}");
    let voip = issued["token"].as_str().expect("token").to_string();
    let c = verify_acs_token(&acs, &voip).await;
    assert_eq!(
        (
            c["acsScope"].clone(),
            c["exp"].as_i64().unwrap_or(0) - c["iat"].as_i64().unwrap_or(0)
        ),
        (json!("voip"), 86400)
    );
    assert_eq!(introspect(&acs, &voip).await["active"], true);
    let (s, _, got) = acs
        .hmac(
            &em,
            Method::GET,
            &format!("/identities/{enc}?api-version=2025-03-02-preview"),
            &Value::Null,
        )
        .await;
    assert_eq!((s, got["id"].as_str()), (200, Some(id.as_str())), "{got}");

    // Revoke: earlier tokens stop working, new ones work.
    let (s, _, b) = acs
        .hmac(
            &em,
            Method::POST,
            &format!("/identities/{enc}/:revokeAccessTokens?api-version=2023-10-01"),
            &Value::Null,
        )
        .await;
    assert_eq!((s, b), (204, Value::Null));
    for t in [&token, &voip] {
        assert_eq!(
            introspect(&acs, t).await,
            json!({"active": false, "reason": "revoked"})
        );
    }
    let (_, _, again) = acs
        .hmac(
            &em,
            Method::POST,
            &issue,
            &json!({"scopes": ["chat.join"], "expiresInMinutes": 1440}),
        )
        .await;
    let fresh = again["token"].as_str().expect("token").to_string();
    assert_eq!(introspect(&acs, &fresh).await["active"], true);

    // Expiry on the emulator's clock.
    em.clock().advance(time::Duration::hours(25));
    assert_eq!(
        introspect(&acs, &fresh).await,
        json!({"active": false, "reason": "expired"})
    );

    // Delete, then the identity is gone.
    let (s, _, _) = acs
        .hmac(
            &em,
            Method::DELETE,
            &format!("/identities/{enc}?api-version=2023-10-01"),
            &Value::Null,
        )
        .await;
    assert_eq!(s, 204);
    let answer = acs
        .hmac(&em, Method::POST, &issue, &json!({"scopes": ["chat"]}))
        .await;
    let gone = acs_error(&answer, 404, "NotFound")
        .to_string()
        .replace(&id, "[id]");
    insta::assert_json_snapshot!(
        "error_identity_deleted",
        serde_json::from_str::<Value>(&gone).expect("JSON")
    );
    em.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_phone_extensibility_exchange_needs_the_assignment() {
    let em = start().await;
    // The Entra token and the exchange at the same instant: exact lifetimes in snapshots.
    em.clock().freeze();
    let acs = Acs::new(&em);
    let http = client(&em);
    let exchange = format!("/access/teamsExtension/:exchangeAccessToken?api-version={TPE}");
    let entra = adele_token(
        &http,
        &em,
        "https://auth.msft.communication.azure.com/TeamsExtension.ManageCalls",
    )
    .await;
    let c = claims_of(&entra);
    assert_eq!(
        (c["oid"].as_str(), c["appid"].as_str()),
        (Some(ADELE_OID), Some(TEAMS_CLIENT)),
        "{c}"
    );

    let answer = acs
        .bearer(Method::POST, &exchange, &json!({}), &entra)
        .await;
    insta::assert_json_snapshot!(
        "error_tpe_no_assignment",
        acs_error(&answer, 403, "Forbidden")
    );

    // The server assigns Adele for the Teams client (HMAC).
    let path = assignment_path(CONTOSO, ADELE_OID);
    let (s, _, _) = acs
        .hmac(
            &em,
            Method::PUT,
            &path,
            &json!({"principalType": "user", "clientIds": [TEAMS_CLIENT]}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _, ok) = acs
        .bearer(Method::POST, &exchange, &json!({}), &entra)
        .await;
    assert_eq!(s, 200, "{ok}");
    let identity = format!("8:acs:{RESOURCE_ID}_{CONTOSO}_{ADELE_OID}");
    assert_eq!(ok["identity"]["id"], identity.as_str());
    let token = ok["accessToken"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let claims = verify_acs_token(&acs, &token).await;
    assert_eq!(
        claims["exp"], c["exp"],
        "the ACS token ends with the Entra token"
    );
    insta::assert_json_snapshot!("tpe_token_claims", redact_acs_claims(claims));
    assert_eq!(introspect(&acs, &token).await["active"], true);

    // Deleting the assignment revokes the token and refuses the next exchange.
    let (s, _, _) = acs.hmac(&em, Method::DELETE, &path, &Value::Null).await;
    assert_eq!(s, 204);
    assert_eq!(
        introspect(&acs, &token).await,
        json!({"active": false, "reason": "revoked"})
    );
    acs_error(
        &acs.bearer(Method::POST, &exchange, &json!({}), &entra)
            .await,
        403,
        "Forbidden",
    );

    // An assignment for another client does not help; a token without the scope is refused;
    // HMAC is not how this exchange authenticates.
    let (s, _, _) = acs
        .hmac(
            &em,
            Method::PUT,
            &path,
            &json!({"principalType": "user", "clientIds": [TEAMS_PHONE]}),
        )
        .await;
    assert_eq!(s, 201);
    acs_error(
        &acs.bearer(Method::POST, &exchange, &json!({}), &entra)
            .await,
        403,
        "Forbidden",
    );
    let no_scope = adele_token(
        &http,
        &em,
        "https://auth.msft.communication.azure.com/Teams.ManageCalls",
    )
    .await;
    let answer = acs
        .bearer(Method::POST, &exchange, &json!({}), &no_scope)
        .await;
    insta::assert_json_snapshot!(
        "error_tpe_missing_scope",
        acs_error(&answer, 403, "Forbidden")
    );
    let answer = acs.hmac(&em, Method::POST, &exchange, &json!({})).await;
    insta::assert_json_snapshot!("error_tpe_hmac", acs_error(&answer, 401, "Denied"));
    em.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_user_exchange_checks_the_entra_token() {
    let em = start().await;
    // The Entra token and the exchange at the same instant: exact lifetimes in snapshots.
    em.clock().freeze();
    let acs = Acs::new(&em);
    let http = client(&em);
    let path = "/teamsUser/:exchangeAccessToken?api-version=2023-10-01";
    let both = adele_token(
        &http,
        &em,
        "https://auth.msft.communication.azure.com/Teams.ManageCalls https://auth.msft.communication.azure.com/Teams.ManageChats",
    )
    .await;
    let (s, _, ok) = acs
        .hmac(
            &em,
            Method::POST,
            path,
            &json!({"token": both, "appId": TEAMS_CLIENT, "userId": ADELE_OID}),
        )
        .await;
    assert_eq!(s, 200, "{ok}");
    let claims = verify_acs_token(&acs, ok["token"].as_str().expect("token")).await;
    assert_eq!(claims["exp"], claims_of(&both)["exp"]);
    insta::assert_json_snapshot!("teams_user_token_claims", redact_acs_claims(claims));

    let calls_only = adele_token(
        &http,
        &em,
        "https://auth.msft.communication.azure.com/Teams.ManageCalls",
    )
    .await;
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "empty_token",
            json!({"token": "", "appId": TEAMS_CLIENT, "userId": ADELE_OID}),
            401,
            "Denied",
        ),
        (
            "invalid_token",
            json!({"token": "abc.def.ghi", "appId": TEAMS_CLIENT, "userId": ADELE_OID}),
            401,
            "Denied",
        ),
        (
            "missing_scope",
            json!({"token": calls_only, "appId": TEAMS_CLIENT, "userId": ADELE_OID}),
            401,
            "Denied",
        ),
        (
            "wrong_app_id",
            json!({"token": both, "appId": TEAMS_PHONE, "userId": ADELE_OID}),
            400,
            "ValidationError",
        ),
        (
            "empty_app_id",
            json!({"token": both, "appId": "", "userId": ADELE_OID}),
            400,
            "ValidationError",
        ),
        (
            "wrong_user_id",
            json!({"token": both, "appId": TEAMS_CLIENT, "userId": MEGAN_OID}),
            400,
            "ValidationError",
        ),
        (
            "missing_user_id",
            json!({"token": both, "appId": TEAMS_CLIENT}),
            400,
            "ValidationError",
        ),
    ];
    for (name, body, status, code) in cases {
        let answer = acs.hmac(&em, Method::POST, path, &body).await;
        insta::assert_json_snapshot!(
            format!("error_teams_user_{name}"),
            acs_error(&answer, status, code)
        );
    }
    em.clock().advance(time::Duration::hours(2));
    let answer = acs
        .hmac(
            &em,
            Method::POST,
            path,
            &json!({"token": both, "appId": TEAMS_CLIENT, "userId": ADELE_OID}),
        )
        .await;
    let v = acs_error(&answer, 401, "Denied");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{v}"
    );
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
async fn python_sdk_identity_and_teams_user_exchange() {
    let Some(py) = test_python() else {
        return;
    };
    let em = start_with(Emulator::builder().key_seed(42).auto_sign_in(true)).await;
    let run = Script::new(&py, "acs_identity.py")
        .trust_ca(&em.ca_path())
        .env(
            "M365EMU_ACS_CONNECTION_STRING",
            &em.ready().acs[0].connection_string,
        )
        .env("M365EMU_HTTPS_URL", em.https_uri())
        .env("M365EMU_TENANT_ID", CONTOSO)
        .env("M365EMU_CLIENT_ID", TEAMS_CLIENT)
        .env("M365EMU_USERNAME", ADELE)
        .run_ok()
        .await;
    println!("{}", run.stdout.trim_end());
    for name in ["hmac", "teams_user"] {
        let case = run.case(name);
        assert_eq!(case["ok"], true, "{case}");
    }
    assert_eq!(
        run.case("hmac")["checks"].as_object().map(|c| c.len()),
        Some(18),
        "{}",
        run.case("hmac")
    );
    // The SDK's requests, as the journal saw them.
    let ops: Vec<String> = em
        .journal()
        .query(&Default::default())
        .iter()
        .map(|e| format!("{} {}", e.operation, e.status))
        .collect();
    for want in [
        "acs.identities.create 201",
        "acs.identities.token 200",
        "acs.identities.token 204",
        "acs.identities.item 204",
        "acs.teams_user.exchange 200",
        "acs.teams_user.exchange 400",
    ] {
        assert!(ops.iter().any(|o| o == want), "{want} missing from {ops:?}");
    }
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
