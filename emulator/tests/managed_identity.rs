//! Managed-identity endpoints over real sockets (plain HTTP, as App Service and IMDS clients
//! call them): App Service `/msi/token` and IMDS `/metadata/identity/oauth2/token[/]`, every
//! selector, response number types, the tokens (shared validator and jsonwebtoken), every
//! error case with its status and a snapshot of its body, the journal, the ready info and
//! `env` exports, fault injection and the virtual clock.

mod support;

use m365_emulator::entra::managed_identity::{self, OPERATION};
use m365_emulator::journal::JournalQuery;
use m365_emulator::world::ManagedIdentityKind;
use m365_emulator::{Emulator, World};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use support::*;

/// The default world's system-assigned identity.
const MI_CLIENT: &str = "cfc00a46-9534-46d0-bc3a-7755df4c5622";
const MI_OBJECT: &str = "76a2e643-d345-4908-afce-7a1da6e18d89";
const MI_RES_ID: &str = "/subscriptions/83a56fa0-c997-4051-be12-3e450c253692/resourceGroups/calling/providers/Microsoft.Web/sites/contoso-calling";
const ACS: &str = "https://communication.azure.com";
const GRAPH: &str = "https://graph.microsoft.com";
const UNKNOWN_ID: &str = "11111111-2222-3333-4444-555555555555";

/// A plain-HTTP client (no proxy), as the managed-identity clients use.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .no_proxy()
        .build()
        .expect("reqwest client")
}

/// `GET {base}{path}?{params}` with `headers`; status, headers and JSON body.
async fn mi_get(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, Value) {
    let url = reqwest::Url::parse_with_params(&format!("{base}{path}"), params).expect("URL");
    let mut req = http.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read_json(req.send().await.expect("managed-identity request")).await
}

/// App Service request with the right secret.
async fn app_service(
    em: &Emulator,
    http: &reqwest::Client,
    params: &[(&str, &str)],
) -> (u16, HeaderMap, Value) {
    let secret = em.ready().identity_header.clone();
    mi_get(
        http,
        em.uri(),
        "/msi/token",
        params,
        &[("X-IDENTITY-HEADER", &secret)],
    )
    .await
}

/// IMDS request with `Metadata: true`.
async fn imds(
    em: &Emulator,
    http: &reqwest::Client,
    path: &str,
    params: &[(&str, &str)],
) -> (u16, HeaderMap, Value) {
    mi_get(http, em.uri(), path, params, &[("Metadata", "true")]).await
}

/// Query parameters of one request.
type Params<'a> = &'a [(&'a str, &'a str)];

/// A journal entry's path, status, error code, token id, and whether it names the identity.
type Expected<'a> = (&'a str, u16, Option<&'a str>, Option<String>, bool);

fn keys_of(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn epoch(v: &Value, field: &str) -> i64 {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a string: {v}"))
        .parse()
        .unwrap_or_else(|_| panic!("{field} is an integer string: {v}"))
}

fn claim_redactions() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    for (sel, placeholder) in [
        (".aio", "[aio]"),
        (".rh", "[rh]"),
        (".uti", "[uti]"),
        (".iat", "[iat]"),
        (".nbf", "[nbf]"),
        (".exp", "[exp]"),
    ] {
        s.add_redaction(sel, placeholder);
    }
    s
}

/// Validates a managed-identity token with the emulator's shared validator and, independently,
/// with jsonwebtoken against the JWKS; checks the v1 app-only claim set; returns the claims.
async fn check_token(em: &Emulator, token: &str, resource: &str, roles: &[&str]) -> Value {
    let valid = m365_emulator::tokens::validate(em.core(), token, &[resource])
        .unwrap_or_else(|e| panic!("the shared validator refuses the token: {e}"));
    let claims = Value::Object(valid.claims.clone());
    let iss = format!("https://sts.windows.net/{CONTOSO}/");
    let jwks = jwks(&client(em), em).await;
    let (header, verified) = verify_token(token, &jwks, resource, &iss)
        .unwrap_or_else(|e| panic!("jsonwebtoken refuses the token: {e}"));
    assert_eq!(verified, claims);
    let raw = raw_header(token);
    assert_eq!(keys_of(&raw), ["typ", "alg", "x5t", "kid"], "{raw}");
    assert_eq!(raw["x5t"], raw["kid"]);
    assert_eq!(header.kid.as_deref(), raw["kid"].as_str());

    assert_eq!(claims["aud"], resource);
    assert_eq!(claims["iss"], iss);
    assert_eq!(claims["idp"], iss);
    assert_eq!(claims["appid"], MI_CLIENT);
    assert_eq!(claims["appidacr"], "2");
    assert_eq!(claims["idtyp"], "app");
    assert_eq!(claims["oid"], MI_OBJECT);
    assert_eq!(claims["sub"], MI_OBJECT);
    assert_eq!(claims["tid"], CONTOSO);
    assert_eq!(claims["ver"], "1.0");
    assert_eq!(claims["xms_mirid"], MI_RES_ID);
    assert_eq!(claims["iat"], claims["nbf"]);
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(
        lifetime, 3900,
        "exp - iat: 3600 s lifetime + 300 s back-dating"
    );
    if roles.is_empty() {
        assert!(claims.get("roles").is_none(), "no roles claim: {claims}");
    } else {
        assert_eq!(claims["roles"], json!(roles));
    }
    assert_eq!(valid.client_id(), Some(MI_CLIENT));
    claims
}

/// Checks an App Service token response; returns the token.
async fn check_app_service_body(em: &Emulator, body: &Value, resource: &str) -> Value {
    assert_eq!(
        keys_of(body),
        [
            "access_token",
            "expires_on",
            "resource",
            "token_type",
            "client_id",
            "not_before"
        ],
        "{body}"
    );
    for k in keys_of(body) {
        assert!(body[k].is_string(), "{k} is a string: {body}");
    }
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], resource);
    assert_eq!(body["client_id"], MI_CLIENT);
    let now = em.clock().unix();
    let expires_on = epoch(body, "expires_on");
    assert!((expires_on - (now + 3600)).abs() <= 5, "expires_on {body}");
    assert_eq!(expires_on - epoch(body, "not_before"), 3900);
    let token = body["access_token"].as_str().expect("access_token");
    let claims = check_token(em, token, resource, &["Communication.Manage"]).await;
    assert_eq!(claims["exp"].as_i64(), Some(expires_on));
    claims
}

/// Checks an IMDS token response; returns the token's claims.
async fn check_imds_body(em: &Emulator, body: &Value, resource: &str) -> Value {
    assert_eq!(
        keys_of(body),
        [
            "access_token",
            "refresh_token",
            "expires_in",
            "expires_on",
            "not_before",
            "resource",
            "token_type",
            "client_id",
            "ext_expires_in"
        ],
        "{body}"
    );
    for k in keys_of(body) {
        assert!(body[k].is_string(), "{k} is a string: {body}");
    }
    assert_eq!(body["refresh_token"], "");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], resource);
    assert_eq!(body["client_id"], MI_CLIENT);
    assert_eq!(epoch(body, "expires_in"), 3599);
    assert_eq!(body["ext_expires_in"], body["expires_in"]);
    assert_eq!(epoch(body, "expires_on") - epoch(body, "not_before"), 3900);
    let token = body["access_token"].as_str().expect("access_token");
    let claims = check_token(em, token, resource, &["Communication.Manage"]).await;
    assert_eq!(claims["exp"].as_i64(), Some(epoch(body, "expires_on")));
    claims
}

fn assert_json_content_type(headers: &HeaderMap) {
    assert_eq!(
        header(headers, "content-type"),
        "application/json; charset=utf-8"
    );
}

// -------------------------------------------------------------------------------------------
// 1. Tokens
// -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_service_issues_tokens_for_every_selector() {
    let em = start().await;
    let http = http_client();
    let selectors: [&[(&str, &str)]; 5] = [
        &[],
        &[("client_id", MI_CLIENT)],
        &[("principal_id", MI_OBJECT)],
        &[("object_id", MI_OBJECT)],
        &[("mi_res_id", MI_RES_ID)],
    ];
    for selector in selectors {
        let mut params = vec![("api-version", "2019-08-01"), ("resource", ACS)];
        params.extend_from_slice(selector);
        let (status, headers, body) = app_service(&em, &http, &params).await;
        assert_eq!(status, 200, "{selector:?}: {body}");
        assert_json_content_type(&headers);
        let claims = check_app_service_body(&em, &body, ACS).await;
        if selector.is_empty() {
            insta::assert_json_snapshot!("app_service_response", body, {
                ".access_token" => "[token]",
                ".expires_on" => "[expires_on]",
                ".not_before" => "[not_before]",
            });
            let token = body["access_token"].as_str().expect("token");
            insta::assert_json_snapshot!("token_header", raw_header(token), {
                ".x5t" => "[kid]", ".kid" => "[kid]"
            });
            claim_redactions().bind(|| {
                insta::assert_json_snapshot!("token_claims_acs", claims);
            });
        }
    }

    // Selector values are matched case-insensitively (GUIDs, ARM ids).
    let upper_res_id = MI_RES_ID.to_uppercase();
    let upper_client = MI_CLIENT.to_uppercase();
    for selector in [
        ("mi_res_id", upper_res_id.as_str()),
        ("client_id", upper_client.as_str()),
    ] {
        let (status, _, body) = app_service(
            &em,
            &http,
            &[("api-version", "2019-08-01"), ("resource", ACS), selector],
        )
        .await;
        assert_eq!(status, 200, "{selector:?}: {body}");
    }

    // `aud` is the resource as requested (v1 rule), trailing slash included.
    let with_slash = format!("{ACS}/");
    let (status, _, body) = app_service(
        &em,
        &http,
        &[("api-version", "2019-08-01"), ("resource", &with_slash)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    check_app_service_body(&em, &body, &with_slash).await;

    // A resource the identity has no grant on: a token without `roles`.
    let (status, _, body) = app_service(
        &em,
        &http,
        &[("api-version", "2019-08-01"), ("resource", GRAPH)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token");
    let claims = check_token(&em, token, GRAPH, &[]).await;
    assert_eq!(claims["aud"], GRAPH);
    // Another resource's validator refuses it.
    assert!(m365_emulator::tokens::validate(em.core(), token, &[ACS]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imds_issues_tokens_for_every_selector_on_both_paths() {
    let em = start().await;
    let http = http_client();
    let selectors: [&[(&str, &str)]; 5] = [
        &[],
        &[("client_id", MI_CLIENT)],
        &[("object_id", MI_OBJECT)],
        &[("msi_res_id", MI_RES_ID)],
        &[("mi_res_id", MI_RES_ID)],
    ];
    // Python sends 2018-02-01 without a trailing slash; @azure/identity JS adds the slash.
    for (path, api_version) in [
        ("/metadata/identity/oauth2/token", "2018-02-01"),
        ("/metadata/identity/oauth2/token/", "2019-08-01"),
    ] {
        for selector in selectors {
            let mut params = vec![("api-version", api_version), ("resource", ACS)];
            params.extend_from_slice(selector);
            let (status, headers, body) = imds(&em, &http, path, &params).await;
            assert_eq!(status, 200, "{path} {selector:?}: {body}");
            assert_json_content_type(&headers);
            check_imds_body(&em, &body, ACS).await;
            if selector.is_empty() && !path.ends_with('/') {
                insta::assert_json_snapshot!("imds_response", body, {
                    ".access_token" => "[token]",
                    ".expires_on" => "[expires_on]",
                    ".not_before" => "[not_before]",
                });
            }
        }
    }
    // `Metadata` is matched case-insensitively, as HTTP header values of this kind are.
    let (status, _, body) = mi_get(
        &http,
        em.uri(),
        "/metadata/identity/oauth2/token",
        &[("api-version", "2018-02-01"), ("resource", ACS)],
        &[("metadata", "True")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_follow_the_virtual_clock() {
    let em = start().await;
    let http = http_client();
    em.clock().freeze();
    em.clock().advance(time::Duration::days(3));
    let now = em.clock().unix();
    let (status, _, body) = app_service(
        &em,
        &http,
        &[("api-version", "2019-08-01"), ("resource", ACS)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(epoch(&body, "expires_on"), now + 3600);
    assert_eq!(epoch(&body, "not_before"), now - 300);
    let (status, _, body) = imds(
        &em,
        &http,
        "/metadata/identity/oauth2/token",
        &[("api-version", "2018-02-01"), ("resource", ACS)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(epoch(&body, "expires_on"), now + 3600);
    assert_eq!(epoch(&body, "not_before"), now - 300);
    assert_eq!(body["expires_in"], "3599");
    let token = body["access_token"].as_str().expect("token").to_string();
    assert!(m365_emulator::tokens::validate(em.core(), &token, &[ACS]).is_ok());
    // Two hours on, the token has expired for the validator.
    em.clock().advance(time::Duration::hours(2));
    assert!(matches!(
        m365_emulator::tokens::validate(em.core(), &token, &[ACS]),
        Err(m365_emulator::tokens::TokenError::Expired(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_endpoints_are_served_on_the_https_listener_too() {
    let em = start().await;
    let https = client(&em);
    let secret = em.ready().identity_header.clone();
    let (status, _, body) = mi_get(
        &https,
        em.https_uri(),
        "/msi/token",
        &[("api-version", "2019-08-01"), ("resource", ACS)],
        &[("X-IDENTITY-HEADER", &secret)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    check_app_service_body(&em, &body, ACS).await;
    let (status, _, body) = mi_get(
        &https,
        em.https_uri(),
        "/metadata/identity/oauth2/token",
        &[("api-version", "2018-02-01"), ("resource", ACS)],
        &[("Metadata", "true")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    check_imds_body(&em, &body, ACS).await;
}

// -------------------------------------------------------------------------------------------
// 2. Errors
// -------------------------------------------------------------------------------------------

/// Splits Entra's `\r\nTrace ID: …` tail off a description (checking its format).
fn strip_trace_tail(text: &str) -> String {
    let Some((first, tail)) = text.split_once("\r\nTrace ID: ") else {
        return text.to_string();
    };
    let mut lines = tail.split("\r\n");
    let trace = lines.next().expect("trace id");
    uuid::Uuid::parse_str(trace).expect("Trace ID is a GUID");
    let corr = lines
        .next()
        .and_then(|l| l.strip_prefix("Correlation ID: "))
        .expect("Correlation ID line");
    uuid::Uuid::parse_str(corr).expect("Correlation ID is a GUID");
    let ts = lines
        .next()
        .and_then(|l| l.strip_prefix("Timestamp: "))
        .expect("Timestamp line");
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    time::PrimitiveDateTime::parse(ts, &f).expect("Timestamp YYYY-MM-DD HH:MM:SSZ");
    assert!(
        lines.next().is_none(),
        "nothing after the timestamp: {text}"
    );
    format!("{first}\r\n[trace]")
}

/// Checks an App Service error completely and returns it redacted for a snapshot.
fn check_app_service_error(status: u16, headers: &HeaderMap, body: &Value, want: u16) -> Value {
    assert_eq!(status, want, "{body}");
    assert_json_content_type(headers);
    assert_eq!(
        keys_of(body),
        [
            "statusCode",
            "message",
            "correlationId",
            "error",
            "error_description"
        ],
        "{body}"
    );
    assert_eq!(body["statusCode"], want, "{body}");
    assert_eq!(body["message"], body["error_description"], "{body}");
    let corr = body["correlationId"].as_str().expect("correlationId");
    uuid::Uuid::parse_str(corr).expect("correlationId is a GUID");
    assert_eq!(header(headers, "x-correlation-id"), corr);
    let mut v = body.clone();
    v["correlationId"] = json!("[correlation_id]");
    let message = strip_trace_tail(body["message"].as_str().expect("message"));
    v["message"] = json!(message);
    v["error_description"] = json!(message);
    v
}

/// Checks an IMDS error completely and returns it redacted for a snapshot.
fn check_imds_error(status: u16, headers: &HeaderMap, body: &Value, want: u16) -> Value {
    assert_eq!(status, want, "{body}");
    assert_json_content_type(headers);
    assert_eq!(keys_of(body), ["error", "error_description"], "{body}");
    let mut v = body.clone();
    v["error_description"] = json!(strip_trace_tail(
        body["error_description"]
            .as_str()
            .expect("error_description")
    ));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_service_errors() {
    let em = start().await;
    let http = http_client();
    let ok = [("api-version", "2019-08-01"), ("resource", ACS)];
    let secret = em.ready().identity_header.clone();

    // Secret header: missing (also when empty), wrong. Checked before anything else.
    for headers in [&[][..], &[("X-IDENTITY-HEADER", "")][..]] {
        let (s, h, b) = mi_get(&http, em.uri(), "/msi/token", &[], headers).await;
        let v = check_app_service_error(s, &h, &b, 400);
        assert_eq!(b["error"], "invalid_request");
        insta::assert_json_snapshot!("app_service_error_header_missing", v);
    }
    let wrong = secret.to_uppercase().replace('A', "B") + "0";
    let (s, h, b) = mi_get(
        &http,
        em.uri(),
        "/msi/token",
        &ok,
        &[("X-IDENTITY-HEADER", &wrong)],
    )
    .await;
    insta::assert_json_snapshot!(
        "app_service_error_header_wrong",
        check_app_service_error(s, &h, &b, 401)
    );
    // IMDS's header is no substitute.
    let (s, h, b) = mi_get(&http, em.uri(), "/msi/token", &ok, &[("Metadata", "true")]).await;
    check_app_service_error(s, &h, &b, 400);

    let cases: [(&str, Params, u16); 11] = [
        ("api_version_missing", &[("resource", ACS)], 400),
        (
            "api_version_unsupported",
            &[("api-version", "2017-09-01"), ("resource", ACS)],
            400,
        ),
        ("resource_missing", &[("api-version", "2019-08-01")], 400),
        (
            "resource_blank",
            &[("api-version", "2019-08-01"), ("resource", " ")],
            400,
        ),
        (
            "unknown_client_id",
            &[
                ("api-version", "2019-08-01"),
                ("resource", ACS),
                ("client_id", UNKNOWN_ID),
            ],
            400,
        ),
        (
            "unknown_principal_id",
            &[
                ("api-version", "2019-08-01"),
                ("resource", ACS),
                ("principal_id", UNKNOWN_ID),
            ],
            400,
        ),
        (
            "unknown_mi_res_id",
            &[
                ("api-version", "2019-08-01"),
                ("resource", ACS),
                (
                    "mi_res_id",
                    "/subscriptions/x/resourceGroups/y/providers/Microsoft.Web/sites/z",
                ),
            ],
            400,
        ),
        (
            "client_id_not_a_guid",
            &[
                ("api-version", "2019-08-01"),
                ("resource", ACS),
                ("client_id", "contoso-calling-service"),
            ],
            400,
        ),
        (
            "two_selectors",
            &[
                ("api-version", "2019-08-01"),
                ("resource", ACS),
                ("client_id", MI_CLIENT),
                ("principal_id", MI_OBJECT),
            ],
            400,
        ),
        (
            "imds_selector_name",
            &[
                ("api-version", "2019-08-01"),
                ("resource", ACS),
                ("msi_res_id", UNKNOWN_ID),
            ],
            // `msi_res_id` is not an App Service parameter: ignored, the system identity
            // answers.
            200,
        ),
        (
            "unknown_resource",
            &[
                ("api-version", "2019-08-01"),
                ("resource", "https://vault.azure.net"),
            ],
            400,
        ),
    ];
    for (name, params, want) in cases {
        let (s, h, b) = app_service(&em, &http, params).await;
        if want == 200 {
            assert_eq!(s, 200, "{name}: {b}");
            continue;
        }
        let v = check_app_service_error(s, &h, &b, want);
        insta::assert_json_snapshot!(format!("app_service_error_{name}"), v);
    }

    // Only GET.
    let resp = http
        .post(format!(
            "{}/msi/token?api-version=2019-08-01&resource={ACS}",
            em.uri()
        ))
        .header("X-IDENTITY-HEADER", &secret)
        .send()
        .await
        .expect("POST");
    assert_eq!(header(resp.headers(), "allow"), "GET");
    let (s, h, b) = read_json(resp).await;
    insta::assert_json_snapshot!(
        "app_service_error_post",
        check_app_service_error(s, &h, &b, 405)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imds_errors() {
    let em = start().await;
    let http = http_client();
    let path = "/metadata/identity/oauth2/token";
    let ok = [("api-version", "2018-02-01"), ("resource", ACS)];

    // `Metadata: true` is required (bad_request_102), before anything else is checked.
    for headers in [
        &[][..],
        &[("Metadata", "false")][..],
        &[("X-IDENTITY-HEADER", em.ready().identity_header.as_str())][..],
    ] {
        for params in [&ok[..], &[][..]] {
            let (s, h, b) = mi_get(&http, em.uri(), path, params, headers).await;
            let v = check_imds_error(s, &h, &b, 400);
            assert_eq!(
                b,
                json!({"error": "invalid_request", "error_description": "Required metadata header not specified"})
            );
            insta::assert_json_snapshot!("imds_error_metadata_header_missing", v);
        }
    }

    let cases: [(&str, Params); 8] = [
        ("api_version_missing", &[("resource", ACS)]),
        ("resource_missing", &[("api-version", "2018-02-01")]),
        (
            "unknown_client_id",
            &[
                ("api-version", "2018-02-01"),
                ("resource", ACS),
                ("client_id", UNKNOWN_ID),
            ],
        ),
        (
            "unknown_object_id",
            &[
                ("api-version", "2018-02-01"),
                ("resource", ACS),
                ("object_id", UNKNOWN_ID),
            ],
        ),
        (
            "unknown_msi_res_id",
            &[
                ("api-version", "2018-02-01"),
                ("resource", ACS),
                ("msi_res_id", "/subscriptions/x/resourceGroups/y/providers/Microsoft.Compute/virtualMachines/z"),
            ],
        ),
        (
            "two_selectors",
            &[
                ("api-version", "2018-02-01"),
                ("resource", ACS),
                ("client_id", MI_CLIENT),
                ("msi_res_id", MI_RES_ID),
            ],
        ),
        (
            "unknown_resource",
            &[
                ("api-version", "2018-02-01"),
                ("resource", "https://vault.azure.net"),
            ],
        ),
        (
            "resource_with_default_suffix",
            &[
                ("api-version", "2018-02-01"),
                ("resource", "https://communication.azure.com/.default"),
            ],
        ),
    ];
    for (name, params) in cases {
        for p in [path, "/metadata/identity/oauth2/token/"] {
            let (s, h, b) = imds(&em, &http, p, params).await;
            let v = check_imds_error(s, &h, &b, 400);
            insta::assert_json_snapshot!(format!("imds_error_{name}"), v);
        }
    }

    let resp = http
        .post(format!(
            "{}{path}?api-version=2018-02-01&resource={ACS}",
            em.uri()
        ))
        .header("Metadata", "true")
        .send()
        .await
        .expect("POST");
    assert_eq!(header(resp.headers(), "allow"), "GET");
    let (s, h, b) = read_json(resp).await;
    insta::assert_json_snapshot!("imds_error_post", check_imds_error(s, &h, &b, 405));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_system_identity_only_selectors_work() {
    let mut world = World::default_world().expect("default world");
    for mi in &mut world.managed_identities {
        mi.kind = ManagedIdentityKind::User;
    }
    let em = start_with(Emulator::builder().key_seed(42).world(world)).await;
    let http = http_client();
    let (s, h, b) = app_service(
        &em,
        &http,
        &[("api-version", "2019-08-01"), ("resource", ACS)],
    )
    .await;
    let v = check_app_service_error(s, &h, &b, 400);
    assert_eq!(v["message"], "Unable to load the proper Managed Identity.");
    let (s, h, b) = imds(
        &em,
        &http,
        "/metadata/identity/oauth2/token",
        &[("api-version", "2018-02-01"), ("resource", ACS)],
    )
    .await;
    let v = check_imds_error(s, &h, &b, 400);
    assert_eq!(
        v,
        json!({"error": "invalid_request", "error_description": "Identity not found"})
    );
    let (s, _, b) = app_service(
        &em,
        &http,
        &[
            ("api-version", "2019-08-01"),
            ("resource", ACS),
            ("client_id", MI_CLIENT),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        em.ready().managed_identities[0].kind,
        ManagedIdentityKind::User
    );
}

// -------------------------------------------------------------------------------------------
// 3. Journal, faults, ready info
// -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_records_the_operation_and_its_outcome() {
    let em = start().await;
    let http = http_client();
    let (s, _, ok_app) = app_service(
        &em,
        &http,
        &[("api-version", "2019-08-01"), ("resource", ACS)],
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, ok_imds) = imds(
        &em,
        &http,
        "/metadata/identity/oauth2/token/",
        &[
            ("api-version", "2018-02-01"),
            ("resource", ACS),
            ("client_id", MI_CLIENT),
        ],
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = mi_get(
        &http,
        em.uri(),
        "/msi/token",
        &[],
        &[("X-IDENTITY-HEADER", "nope")],
    )
    .await;
    assert_eq!(s, 401);
    let (s, _, _) = mi_get(
        &http,
        em.uri(),
        "/metadata/identity/oauth2/token",
        &[("api-version", "2018-02-01"), ("resource", ACS)],
        &[],
    )
    .await;
    assert_eq!(s, 400);
    let (s, _, _) = imds(
        &em,
        &http,
        "/metadata/identity/oauth2/token",
        &[
            ("api-version", "2018-02-01"),
            ("resource", "https://vault.azure.net"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    let (s, _, _) = imds(
        &em,
        &http,
        "/metadata/identity/oauth2/token",
        &[
            ("api-version", "2018-02-01"),
            ("resource", ACS),
            ("object_id", UNKNOWN_ID),
        ],
    )
    .await;
    assert_eq!(s, 400);

    let entries = em.journal().query(&JournalQuery {
        operation: Some(OPERATION.into()),
        ..Default::default()
    });
    let dump = format!("{entries:#?}");
    assert_eq!(entries.len(), 6, "{dump}");
    let uti = |body: &Value| {
        let token = body["access_token"].as_str().expect("token");
        m365_emulator::tokens::validate(em.core(), token, &[ACS])
            .expect("valid")
            .str("uti")
            .expect("uti")
            .to_string()
    };
    let expected: [Expected; 6] = [
        ("/msi/token", 200, None, Some(uti(&ok_app)), true),
        (
            "/metadata/identity/oauth2/token/",
            200,
            None,
            Some(uti(&ok_imds)),
            true,
        ),
        (
            "/msi/token",
            401,
            Some("identity_header_invalid"),
            None,
            false,
        ),
        (
            "/metadata/identity/oauth2/token",
            400,
            Some("bad_request_102"),
            None,
            false,
        ),
        (
            "/metadata/identity/oauth2/token",
            400,
            Some("AADSTS500011"),
            None,
            true,
        ),
        (
            "/metadata/identity/oauth2/token",
            400,
            Some("identity_not_found"),
            None,
            false,
        ),
    ];
    for (e, (path, status, code, token_id, identified)) in entries.iter().zip(expected) {
        assert_eq!(e.operation, OPERATION, "{dump}");
        assert_eq!(e.service, "entra", "{dump}");
        assert_eq!(e.method, "GET");
        assert_eq!(e.path, path, "{dump}");
        assert_eq!(e.status, status, "{dump}");
        assert_eq!(e.error_code.as_deref(), code, "{dump}");
        assert_eq!(e.token_id, token_id, "{dump}");
        if identified {
            assert_eq!(e.client_id.as_deref(), Some(MI_CLIENT), "{dump}");
            assert_eq!(e.tenant.as_deref(), Some(CONTOSO), "{dump}");
        } else {
            assert_eq!(e.tenant, None, "{dump}");
        }
        // The App Service secret never reaches the journal.
        if let Some(v) = e.headers.get("x-identity-header") {
            assert_eq!(v, "[redacted]");
        }
    }
    assert_eq!(
        entries[0].headers.get("x-identity-header"),
        Some("[redacted]")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_match_the_managed_identity_operation() {
    let em = start().await;
    let http = http_client();
    let guard = em
        .add_fault(json!({
            "match": {"operation": OPERATION},
            "action": {"status": 503},
            "schedule": {"first": 1}
        }))
        .expect("fault rule");
    let params = [("api-version", "2018-02-01"), ("resource", ACS)];
    let url = reqwest::Url::parse_with_params(
        &format!("{}/metadata/identity/oauth2/token", em.uri()),
        params,
    )
    .expect("URL");
    let resp = http
        .get(url)
        .header("Metadata", "true")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 503);
    let (s, _, b) = imds(&em, &http, "/metadata/identity/oauth2/token", &params).await;
    assert_eq!(s, 200, "{b}");
    let entries = em.journal().query(&JournalQuery {
        operation: Some(OPERATION.into()),
        ..Default::default()
    });
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].fault.as_deref(), Some(guard.id()));
    assert_eq!(entries[1].fault, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_info_and_env_exports_describe_the_identity_endpoints() {
    let state = tempfile::tempdir().expect("temp dir");
    let em = start_with(
        Emulator::builder()
            .key_seed(42)
            .state_dir(state.path().join("s")),
    )
    .await;
    let ready = em.ready().clone();
    assert_eq!(ready.identity_endpoint, format!("{}/msi/token", em.uri()));
    assert_eq!(
        ready.identity_header,
        managed_identity::identity_header(em.core())
    );
    assert_eq!(ready.identity_header.len(), 32);
    assert!(ready
        .identity_header
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(ready.managed_identities.len(), 1);
    let mi = &ready.managed_identities[0];
    assert_eq!(mi.name, "contoso-calling-service");
    assert_eq!(mi.tenant, CONTOSO);
    assert_eq!(mi.client_id, MI_CLIENT);
    assert_eq!(mi.object_id, MI_OBJECT);
    assert_eq!(mi.kind, ManagedIdentityKind::System);
    assert_eq!(mi.resource_id.as_deref(), Some(MI_RES_ID));

    let exports = ready.env_exports();
    for line in [
        format!("export IDENTITY_ENDPOINT='{}/msi/token'\n", em.uri()),
        format!("export IDENTITY_HEADER='{}'\n", ready.identity_header),
        format!("export AZURE_POD_IDENTITY_AUTHORITY_HOST='{}'\n", em.uri()),
        // Existing exports are unchanged.
        format!("export AZURE_AUTHORITY_HOST='{}'\n", em.https_uri()),
        format!("export AZURE_TENANT_ID='{CONTOSO}'\n"),
    ] {
        assert!(exports.contains(&line), "{line:?} in:\n{exports}");
    }

    // The ready file on disk says the same; a ready file without the new fields still parses.
    let on_disk: Value = serde_json::from_slice(
        &std::fs::read(em.state_dir().join("ready.json")).expect("ready.json"),
    )
    .expect("JSON");
    assert_eq!(on_disk["identity_header"], ready.identity_header);
    assert_eq!(on_disk["managed_identities"][0]["kind"], "system");
    let mut old = on_disk.clone();
    for k in ["managed_identities", "identity_endpoint", "identity_header"] {
        old.as_object_mut().expect("object").remove(k);
    }
    let old: m365_emulator::ReadyInfo = serde_json::from_value(old).expect("old ready file");
    assert!(!old.env_exports().contains("IDENTITY_HEADER"));

    // The secret survives a restart on the same state directory (it derives from the CA).
    let header = ready.identity_header.clone();
    em.shutdown().await;
    let em = start_with(
        Emulator::builder()
            .key_seed(42)
            .state_dir(state.path().join("s")),
    )
    .await;
    assert_eq!(em.ready().identity_header, header);
    let http = http_client();
    let (s, _, b) = mi_get(
        &http,
        em.uri(),
        "/msi/token",
        &[("api-version", "2019-08-01"), ("resource", ACS)],
        &[("X-IDENTITY-HEADER", &header)],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // Another state directory, another CA (generated per state directory), another secret.
    let other = start().await;
    assert_ne!(other.ready().identity_header, header);
}
