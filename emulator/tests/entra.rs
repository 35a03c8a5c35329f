//! Black-box tests of the Entra endpoints over real sockets (HTTPS, the emulator's own CA):
//! token endpoints v1/v2 with secrets and certificate assertions, the AADSTS error catalog,
//! discovery documents and JWKS, the control plane's key credentials and key rotation, and
//! persistence across restarts. Issued tokens are verified with jsonwebtoken against the JWKS.

mod support;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use m365_emulator::jose::JwsAlg;
use m365_emulator::pki::CertInfo;
use m365_emulator::Emulator;
use serde_json::{json, Value};
use support::*;

const TEAMS_PHONE_SECRET: &str = "teams-phone-secret~0123456789abcdefghij";
const GRAPH: &str = "https://graph.microsoft.com";
const CONTOSO_ROLES: [&str; 3] = [
    "ActivityFeed.Read",
    "ActivityFeed.ReadDlp",
    "ServiceHealth.Read",
];
const FABRIKAM_ROLES: [&str; 1] = ["ActivityFeed.Read"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    SecretBody,
    SecretBasic,
    /// RS256, padded `x5t`, float `exp`/`iat`, no `nbf` (MSAL Python / azure-identity).
    CertRs256X5t,
    /// PS256, `x5t#S256`, `x5c` (MSAL Node / @azure/identity with the chain).
    CertPs256X5tS256,
}

impl Auth {
    fn acr(self) -> &'static str {
        match self {
            Auth::SecretBody | Auth::SecretBasic => "1",
            Auth::CertRs256X5t | Auth::CertPs256X5tS256 => "2",
        }
    }
}

fn token_url(emulator: &Emulator, tenant: &str, endpoint: Endpoint) -> String {
    match endpoint {
        Endpoint::V1 => token_url_v1(emulator, tenant),
        Endpoint::V2 => token_url_v2(emulator, tenant),
    }
}

/// Requests an app-only token for `resource` as `cred`'s application.
#[allow(clippy::too_many_arguments)]
async fn request_token(
    http: &reqwest::Client,
    emulator: &Emulator,
    cred: &AppCredential,
    secret: &str,
    tenant: &str,
    endpoint: Endpoint,
    auth: Auth,
    resource: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = token_url(emulator, tenant, endpoint);
    let mut form: Vec<(&str, String)> = vec![("grant_type", "client_credentials".into())];
    match endpoint {
        Endpoint::V1 => form.push(("resource", resource.into())),
        Endpoint::V2 => form.push(("scope", format!("{resource}/.default"))),
    }
    let now = emulator.clock().now().unix_timestamp();
    let mut rb = http.post(&url);
    match auth {
        Auth::SecretBody => {
            form.push(("client_id", cred.client_id.clone()));
            form.push(("client_secret", secret.into()));
        }
        Auth::SecretBasic => rb = rb.basic_auth(&cred.client_id, Some(secret)),
        Auth::CertRs256X5t | Auth::CertPs256X5tS256 => {
            // The assertion's audience is the URL the client posts to (from discovery).
            let assertion = if auth == Auth::CertRs256X5t {
                cred.msal_python_assertion(&cred.client_id, &url, now)
            } else {
                cred.msal_node_assertion(&cred.client_id, &url, now)
            };
            form.push(("client_id", cred.client_id.clone()));
            form.push(("client_info", "1".into()));
            form.push(("client_assertion_type", JWT_BEARER.into()));
            form.push(("client_assertion", assertion));
        }
    }
    read_json(rb.form(&form).send().await.expect("request sent")).await
}

/// The claims every app-only v1 access token carries.
fn check_app_claims(
    claims: &Value,
    tenant: &str,
    client_id: &str,
    acr: &str,
    aud: &str,
    roles: Option<&[&str]>,
) {
    let iss = format!("https://sts.windows.net/{tenant}/");
    assert_eq!(claims["aud"], aud, "{claims}");
    assert_eq!(claims["iss"], iss.as_str());
    assert_eq!(claims["idp"], iss.as_str());
    assert_eq!(claims["appid"], client_id);
    assert_eq!(claims["appidacr"], acr);
    assert_eq!(claims["idtyp"], "app");
    assert_eq!(claims["tid"], tenant);
    assert_eq!(claims["ver"], "1.0");
    match roles {
        Some(r) => assert_eq!(claims["roles"], json!(r), "{claims}"),
        None => assert!(claims.get("roles").is_none(), "no roles: {claims}"),
    }
    assert!(claims.get("scp").is_none(), "app-only tokens have no scp");
    let oid = claims["oid"].as_str().expect("oid");
    uuid::Uuid::parse_str(oid).expect("oid is a GUID");
    assert_eq!(claims["sub"], oid, "oid == sub for app-only tokens");
    for opaque in ["uti", "aio", "rh"] {
        assert!(
            claims[opaque].as_str().is_some_and(|s| !s.is_empty()),
            "{opaque}: {claims}"
        );
    }
    let iat = claims["iat"].as_i64().expect("integer iat");
    let nbf = claims["nbf"].as_i64().expect("integer nbf");
    let exp = claims["exp"].as_i64().expect("integer exp");
    assert_eq!(iat, nbf, "iat == nbf");
    assert_eq!(
        exp - iat,
        3900,
        "exp - iat (back-dated by 300 s, 3600 s lifetime)"
    );
}

fn token_claim_redactions() -> insta::Settings {
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

fn keys_of(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// Replaces every occurrence of `from` in the JSON text by `to`.
fn replace_text(v: &Value, from: &str, to: &str) -> Value {
    serde_json::from_str(&v.to_string().replace(from, to)).expect("still JSON")
}

// -------------------------------------------------------------------------------------------
// 1. Successful client-credentials requests
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_credentials_succeed_on_v1_and_v2_with_secrets_and_certificates() {
    let em = start().await;
    let http = client(&em);
    let jwks = jwks(&http, &em).await;
    let (_, _, keys) = get_json(&http, &format!("{}/_emulator/keys", em.https_uri())).await;
    let active_kid = keys["active_kid"].as_str().expect("active_kid").to_string();
    assert!(kids(&jwks).contains(&active_kid), "active kid is published");
    let collector = AppCredential::load(&em, COLLECTOR);
    let mut utis = std::collections::HashSet::new();
    let mut cert_claims: Vec<Value> = Vec::new();

    for endpoint in [Endpoint::V2, Endpoint::V1] {
        for auth in [
            Auth::SecretBody,
            Auth::SecretBasic,
            Auth::CertRs256X5t,
            Auth::CertPs256X5tS256,
        ] {
            let what = format!("{endpoint:?} {auth:?}");
            let (status, headers, body) = request_token(
                &http,
                &em,
                &collector,
                COLLECTOR_SECRET,
                CONTOSO,
                endpoint,
                auth,
                MANAGE,
            )
            .await;
            assert_eq!(status, 200, "{what}: {body}");
            assert_token_headers(&headers);
            assert!(headers.get("x-ms-request-id").is_some());
            let token = body["access_token"].as_str().expect("access_token");
            let (header, claims) = verify_token(
                token,
                &jwks,
                MANAGE,
                &format!("https://sts.windows.net/{CONTOSO}/"),
            )
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            check_app_claims(
                &claims,
                CONTOSO,
                COLLECTOR,
                auth.acr(),
                MANAGE,
                Some(&CONTOSO_ROLES),
            );
            assert!(utis.insert(claims["uti"].as_str().unwrap().to_string()));
            // v1 token header: kid == x5t, the active key.
            assert_eq!(header.kid.as_deref(), Some(active_kid.as_str()));
            assert_eq!(header.x5t.as_deref(), Some(active_kid.as_str()));
            assert_eq!(
                keys_of(&raw_header(token)),
                ["typ", "alg", "x5t", "kid"],
                "{what}"
            );

            match endpoint {
                Endpoint::V2 => {
                    assert_eq!(
                        keys_of(&body),
                        ["token_type", "expires_in", "ext_expires_in", "access_token"]
                    );
                    assert_eq!(body["token_type"], "Bearer");
                    assert_eq!(body["expires_in"], json!(3599), "v2 numbers are integers");
                    assert_eq!(body["ext_expires_in"], json!(3599));
                }
                Endpoint::V1 => {
                    assert_eq!(
                        keys_of(&body),
                        [
                            "token_type",
                            "expires_in",
                            "ext_expires_in",
                            "expires_on",
                            "not_before",
                            "resource",
                            "access_token"
                        ]
                    );
                    assert_eq!(body["expires_in"], "3599", "v1 numbers are strings");
                    assert_eq!(body["ext_expires_in"], "3599");
                    assert_eq!(body["resource"], MANAGE);
                    let expires_on: i64 = body["expires_on"].as_str().unwrap().parse().unwrap();
                    let not_before: i64 = body["not_before"].as_str().unwrap().parse().unwrap();
                    assert_eq!(expires_on, claims["exp"].as_i64().unwrap());
                    assert_eq!(not_before, claims["nbf"].as_i64().unwrap());
                    assert_eq!(expires_on - not_before, 3599 + 301);
                }
            }

            if (endpoint, auth) == (Endpoint::V2, Auth::SecretBody) {
                insta::assert_json_snapshot!("token_v2_response", body, {".access_token" => "[token]"});
                insta::assert_json_snapshot!("token_v1_header", raw_header(token), {
                    ".x5t" => "[kid]", ".kid" => "[kid]"
                });
                token_claim_redactions().bind(|| {
                    insta::assert_json_snapshot!("token_claims_contoso_secret", claims);
                });
            }
            if (endpoint, auth) == (Endpoint::V1, Auth::SecretBody) {
                insta::assert_json_snapshot!("token_v1_response", body, {
                    ".access_token" => "[token]",
                    ".expires_on" => "[expires_on]",
                    ".not_before" => "[not_before]",
                });
            }
            if auth.acr() == "2" {
                cert_claims.push(claims);
            }
        }
    }
    // Both assertion styles on both endpoints give the same claims, apart from volatile ones.
    let stable = |c: &Value| {
        let mut c = c.clone();
        for k in ["aio", "rh", "uti", "iat", "nbf", "exp"] {
            c.as_object_mut().unwrap().remove(k);
        }
        c
    };
    assert_eq!(cert_claims.len(), 4);
    for c in &cert_claims[1..] {
        assert_eq!(stable(c), stable(&cert_claims[0]));
    }
    token_claim_redactions().bind(|| {
        insta::assert_json_snapshot!("token_claims_contoso_certificate", cert_claims[0]);
    });

    // Fabrikam consented to the collector for ActivityFeed.Read only; the tenant may be named
    // by domain (and the assertion's audience then names it the same way).
    for (segment, endpoint, auth) in [
        (FABRIKAM, Endpoint::V1, Auth::SecretBody),
        (
            "fabrikam.onmicrosoft.com",
            Endpoint::V2,
            Auth::CertPs256X5tS256,
        ),
        ("FABRIKAM.onmicrosoft.com", Endpoint::V2, Auth::CertRs256X5t),
    ] {
        let (status, _, body) = request_token(
            &http,
            &em,
            &collector,
            COLLECTOR_SECRET,
            segment,
            endpoint,
            auth,
            MANAGE,
        )
        .await;
        assert_eq!(status, 200, "{segment} {auth:?}: {body}");
        let (_, claims) = verify_token(
            body["access_token"].as_str().unwrap(),
            &jwks,
            MANAGE,
            &format!("https://sts.windows.net/{FABRIKAM}/"),
        )
        .expect("fabrikam token verifies");
        check_app_claims(
            &claims,
            FABRIKAM,
            COLLECTOR,
            auth.acr(),
            MANAGE,
            Some(&FABRIKAM_ROLES),
        );
        if auth == Auth::SecretBody {
            token_claim_redactions().bind(|| {
                insta::assert_json_snapshot!("token_claims_fabrikam_secret", claims);
            });
        }
    }

    // MSAL Node posts to `{token_endpoint}?client-request-id=…` (and repeats telemetry in the
    // body) while its assertion's audience is the bare token endpoint.
    let request_id = uuid::Uuid::new_v4().to_string();
    let url = token_url_v2(&em, CONTOSO);
    let assertion =
        collector.msal_node_assertion(COLLECTOR, &url, em.clock().now().unix_timestamp());
    let mut form = assertion_form_v2(COLLECTOR, &assertion);
    form.push(("x-client-SKU", "msal.js.node".into()));
    form.push(("client-request-id", request_id.clone()));
    let (status, headers, body) = post_form(
        &http,
        &format!("{url}?client-request-id={request_id}"),
        &form,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "client-request-id"), request_id);

    // /organizations acts in the multi-tenant app's home tenant.
    let (status, _, body) = request_token(
        &http,
        &em,
        &collector,
        COLLECTOR_SECRET,
        "organizations",
        Endpoint::V2,
        Auth::SecretBody,
        MANAGE,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = verify_token(
        body["access_token"].as_str().unwrap(),
        &jwks,
        MANAGE,
        &format!("https://sts.windows.net/{CONTOSO}/"),
    )
    .expect("verifies");
    assert_eq!(claims["tid"], CONTOSO);

    // The Teams-phone backend gets its Graph roles; for a resource it has no grant on, the token
    // has no roles claim at all. The resource may be named with a trailing slash (v1).
    let teams = AppCredential::load(&em, TEAMS_PHONE);
    for (resource, roles) in [
        (
            GRAPH,
            Some(
                &[
                    "OnlineMeetings.ReadWrite.All",
                    "OnlineMeetingArtifact.Read.All",
                    "Chat.ReadWrite.All",
                    "User.Read.All",
                ][..],
            ),
        ),
        (MANAGE, None),
    ] {
        let (status, _, body) = request_token(
            &http,
            &em,
            &teams,
            TEAMS_PHONE_SECRET,
            CONTOSO_DOMAIN,
            Endpoint::V2,
            Auth::CertPs256X5tS256,
            resource,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (_, claims) = verify_token(
            body["access_token"].as_str().unwrap(),
            &jwks,
            resource,
            &format!("https://sts.windows.net/{CONTOSO}/"),
        )
        .expect("verifies");
        check_app_claims(&claims, CONTOSO, TEAMS_PHONE, "2", resource, roles);
    }
    let (status, _, body) = request_token(
        &http,
        &em,
        &teams,
        TEAMS_PHONE_SECRET,
        CONTOSO,
        Endpoint::V1,
        Auth::SecretBasic,
        "https://graph.microsoft.com/",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resource"], "https://graph.microsoft.com/");
    let (_, claims) = verify_token(
        body["access_token"].as_str().unwrap(),
        &jwks,
        "https://graph.microsoft.com/",
        &format!("https://sts.windows.net/{CONTOSO}/"),
    )
    .expect("v1 aud is the resource as requested");
    assert_eq!(claims["appidacr"], "1");

    // A tampered token does not verify (the verifier really checks the signature).
    let token = secret_token(&http, &em, CONTOSO).await;
    let (h, p, s) = {
        let mut it = token.split('.');
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
    };
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    claims["roles"] = json!(["ActivityFeed.Read", "Everything.ReadWrite.All"]);
    let forged = format!(
        "{h}.{}.{s}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    assert!(verify_token(
        &forged,
        &jwks,
        MANAGE,
        &format!("https://sts.windows.net/{CONTOSO}/")
    )
    .is_err());
}

// -------------------------------------------------------------------------------------------
// 2. The AADSTS error catalog, provoked over the wire
// -------------------------------------------------------------------------------------------

/// Sends a request expected to fail, checks the envelope and returns it redacted.
async fn expect_error(
    emulator: &Emulator,
    request: reqwest::RequestBuilder,
    status: u16,
    code: u32,
) -> Value {
    let (got, headers, body) = read_json(request.send().await.expect("request sent")).await;
    check_error(emulator, got, &headers, &body, status, code)
}

fn first_line(v: &Value) -> &str {
    v["error_description"].as_str().expect("error_description")
}

#[tokio::test]
async fn tenant_and_client_errors() {
    let em = start().await;
    let http = client(&em);
    let secret_form = secret_form_v2(COLLECTOR, COLLECTOR_SECRET);

    let unknown = "11111111-2222-3333-4444-555555555555";
    let v = expect_error(
        &em,
        http.post(token_url_v2(&em, unknown)).form(&secret_form),
        400,
        90002,
    )
    .await;
    assert!(first_line(&v).contains(&format!("Tenant '{unknown}' not found")));
    insta::assert_json_snapshot!("error_90002_unknown_tenant", v);

    // An unknown domain is an unknown tenant too (v1 endpoint).
    let mut v1_form = secret_form.clone();
    v1_form.retain(|(k, _)| *k != "scope");
    v1_form.push(("resource", MANAGE.into()));
    let v = expect_error(
        &em,
        http.post(token_url_v1(&em, "nowhere.example.com"))
            .form(&v1_form),
        400,
        90002,
    )
    .await;
    assert!(first_line(&v).contains("Tenant 'nowhere.example.com' not found"));

    let v = expect_error(
        &em,
        http.post(token_url_v2(&em, "00000000-0000-0000-0000-000000000000"))
            .form(&secret_form),
        400,
        90002,
    )
    .await;
    assert!(first_line(&v).contains("may not be an empty GUID"));
    insta::assert_json_snapshot!("error_90002_empty_guid", v);

    let v = expect_error(
        &em,
        http.post(token_url_v2(&em, "not%20a%20tenant%21"))
            .form(&secret_form),
        400,
        900023,
    )
    .await;
    assert!(first_line(&v).contains("'not a tenant!'"), "{v}");
    insta::assert_json_snapshot!("error_900023_invalid_tenant", v);
    let v = expect_error(
        &em,
        http.post(token_url_v2(&em, "bad_tenant_%21"))
            .form(&secret_form),
        400,
        900023,
    )
    .await;
    assert!(first_line(&v).contains("'bad_tenant_!'"), "{v}");

    let stranger = "99999999-8888-7777-6666-555555555555";
    let v = expect_error(
        &em,
        http.post(token_url_v2(&em, CONTOSO))
            .form(&secret_form_v2(stranger, "whatever")),
        401,
        700016,
    )
    .await;
    assert!(first_line(&v).contains(&format!(
        "'{stranger}' was not found in the directory 'Contoso'"
    )));
    insta::assert_json_snapshot!("error_700016_unknown_client", v);
    let v = expect_error(
        &em,
        http.post(token_url_v2(&em, CONTOSO))
            .form(&secret_form_v2("not-a-guid", "whatever")),
        401,
        700016,
    )
    .await;
    assert!(first_line(&v).contains("'not-a-guid'"));

    // The single-tenant Teams-phone app does not exist in Fabrikam.
    let v = expect_error(
        &em,
        http.post(token_url_v2(&em, FABRIKAM))
            .form(&secret_form_v2(TEAMS_PHONE, TEAMS_PHONE_SECRET)),
        401,
        700016,
    )
    .await;
    assert!(first_line(&v).contains("in the directory 'Fabrikam'"));
    insta::assert_json_snapshot!("error_700016_single_tenant_app_elsewhere", v);

    let v = expect_error(
        &em,
        http.post(token_url_v2(&em, "common"))
            .form(&secret_form_v2(TEAMS_PHONE, TEAMS_PHONE_SECRET)),
        400,
        50194,
    )
    .await;
    assert!(first_line(&v).contains(&format!("'{TEAMS_PHONE}'(Contoso Teams Phone Backend)")));
    insta::assert_json_snapshot!("error_50194_single_tenant_on_common", v);

    for alias in ["common", "consumers", "Common"] {
        let v = expect_error(
            &em,
            http.post(token_url_v2(&em, alias)).form(&secret_form),
            400,
            9001023,
        )
        .await;
        if alias == "common" {
            insta::assert_json_snapshot!("error_9001023_client_credentials_on_common", v);
        }
    }

    let v = expect_error(
        &em,
        http.post(token_url_v2(&em, CONTOSO))
            .form(&secret_form_v2(COLLECTOR, "collector-secret~wrong")),
        401,
        7000215,
    )
    .await;
    insta::assert_json_snapshot!("error_7000215_wrong_secret", v);
    // HTTP Basic with a wrong secret, too.
    let mut basic_form = secret_form.clone();
    basic_form.retain(|(k, _)| *k != "client_id" && *k != "client_secret");
    expect_error(
        &em,
        http.post(token_url_v2(&em, CONTOSO))
            .basic_auth(COLLECTOR, Some("nope"))
            .form(&basic_form),
        401,
        7000215,
    )
    .await;
    // A secret that differs in one character is wrong (no lossy comparison).
    let almost = COLLECTOR_SECRET.replace('~', "-");
    expect_error(
        &em,
        http.post(token_url_v2(&em, CONTOSO))
            .form(&secret_form_v2(COLLECTOR, &almost)),
        401,
        7000215,
    )
    .await;

    let v = expect_error(
        &em,
        http.post(token_url_v2(&em, CONTOSO))
            .form(&secret_form_v2(COLLECTOR, COLLECTOR_EXPIRED_SECRET)),
        401,
        7000222,
    )
    .await;
    insta::assert_json_snapshot!("error_7000222_expired_secret", v);

    let mut no_credential = secret_form.clone();
    no_credential.retain(|(k, _)| *k != "client_secret");
    let v = expect_error(
        &em,
        http.post(token_url_v2(&em, CONTOSO)).form(&no_credential),
        401,
        7000218,
    )
    .await;
    insta::assert_json_snapshot!("error_7000218_no_credential", v);
    // A blank secret counts as none.
    expect_error(
        &em,
        http.post(token_url_v2(&em, CONTOSO))
            .form(&secret_form_v2(COLLECTOR, "  ")),
        401,
        7000218,
    )
    .await;
}

/// The instant the assertion tests freeze the emulator's clock at.
const FROZEN: time::OffsetDateTime = time::macros::datetime!(2030-01-02 03:04:05.5 UTC);

#[tokio::test]
async fn client_assertion_errors() {
    let em = start().await;
    em.clock().freeze();
    em.clock().set(FROZEN);
    let now = FROZEN.unix_timestamp();
    let http = client(&em);
    let url = token_url_v2(&em, CONTOSO);
    let collector = AppCredential::load(&em, COLLECTOR);
    let teams = AppCredential::load(&em, TEAMS_PHONE);
    let post = |assertion: String| {
        http.post(&url)
            .form(&assertion_form_v2(COLLECTOR, &assertion))
    };
    let rs256_header =
        |cred: &AppCredential| json!({"alg": "RS256", "typ": "JWT", "x5t": cred.x5t()});
    let claims = |iss: &str, sub: &str, aud: &str| json!({"aud": aud, "iss": iss, "sub": sub, "exp": now + 600, "nbf": now, "iat": now, "jti": uuid::Uuid::new_v4()});
    let good_claims = claims(COLLECTOR, COLLECTOR, &url);

    // Sanity: the well-formed assertion is accepted at the frozen instant.
    let (status, _, body) = read_json(
        post(collector.sign(JwsAlg::RS256, &rs256_header(&collector), &good_claims))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Signed by a key that is not registered on the collector (the Teams-phone app's).
    let v = expect_error(
        &em,
        post(teams.sign(JwsAlg::RS256, &rs256_header(&teams), &good_claims)),
        401,
        700027,
    )
    .await;
    assert!(first_line(&v).contains(&format!(
        "The key was not found., Thumbprint of key used by client: '{}'",
        teams.cert.sha1_hex()
    )));
    assert!(first_line(&v).contains(&format!("for app Id '{COLLECTOR}'")));
    let v = replace_text(&v, &teams.cert.sha1_hex(), "[teams-thumbprint]");
    insta::assert_json_snapshot!("error_700027_key_not_found", v);

    // An x5c whose leaf is not the certificate the thumbprint names.
    let header = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": collector.x5t_s256(), "x5c": [teams.x5c()]});
    expect_error(
        &em,
        post(collector.sign(JwsAlg::PS256, &header, &good_claims)),
        401,
        700027,
    )
    .await;

    // The collector's thumbprint, but signed with another key.
    let v = expect_error(
        &em,
        post(teams.sign(JwsAlg::RS256, &rs256_header(&collector), &good_claims)),
        401,
        700027,
    )
    .await;
    assert!(first_line(&v).contains("Client assertion contains an invalid signature."));
    assert!(first_line(&v).contains(&format!(
        "Thumbprint of key used by client: '{}', Found key 'Start=01/01/2025 00:00:00, End=01/01/2035 00:00:00'",
        collector.cert.sha1_hex()
    )));
    let v = replace_text(&v, &collector.cert.sha1_hex(), "[collector-thumbprint]");
    insta::assert_json_snapshot!("error_700027_invalid_signature", v);
    // PS256 header, RS256 signature: invalid signature as well.
    let ps_header = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": collector.x5t_s256()});
    let mismatched = collector.sign(JwsAlg::RS256, &ps_header, &good_claims);
    expect_error(&em, post(mismatched), 401, 700027).await;

    // Validity window: 300 s of skew either way.
    let mut expired = good_claims.clone();
    expired["exp"] = json!(now - 400);
    expired["nbf"] = json!(now - 1000);
    let v = expect_error(
        &em,
        post(collector.sign(JwsAlg::RS256, &rs256_header(&collector), &expired)),
        401,
        700024,
    )
    .await;
    assert!(
        first_line(&v).contains("Current time: 2030-01-02T03:04:05.5000000Z"),
        "{v}"
    );
    insta::assert_json_snapshot!("error_700024_expired", v);
    let mut not_yet = good_claims.clone();
    not_yet["nbf"] = json!(now + 400);
    let v = expect_error(
        &em,
        post(collector.sign(JwsAlg::RS256, &rs256_header(&collector), &not_yet)),
        401,
        700024,
    )
    .await;
    insta::assert_json_snapshot!("error_700024_not_yet_valid", v);
    // No nbf (MSAL Python) reads as valid-from 1970 in the message.
    let mut no_nbf = expired.clone();
    no_nbf.as_object_mut().unwrap().remove("nbf");
    let v = expect_error(
        &em,
        post(collector.sign(JwsAlg::RS256, &rs256_header(&collector), &no_nbf)),
        401,
        700024,
    )
    .await;
    assert!(first_line(&v).contains("assertion valid from 1970-01-01T00:00:00.0000000Z"));
    // Inside the skew both ways: accepted.
    let mut edge = good_claims.clone();
    edge["exp"] = json!(now - 299);
    edge["nbf"] = json!(now + 299);
    let (status, _, body) = read_json(
        post(collector.sign(JwsAlg::RS256, &rs256_header(&collector), &edge))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "within the 300 s skew: {body}");

    // Audience: another URL, Entra's real token endpoint, and the v1 URL on the v2 endpoint.
    for (i, aud) in [
        "https://example.com/other".to_string(),
        format!("https://login.microsoftonline.com/{CONTOSO}/oauth2/v2.0/token"),
        token_url_v1(&em, CONTOSO),
    ]
    .into_iter()
    .enumerate()
    {
        let v = expect_error(
            &em,
            post(collector.sign(
                JwsAlg::RS256,
                &rs256_header(&collector),
                &claims(COLLECTOR, COLLECTOR, &aud),
            )),
            401,
            700023,
        )
        .await;
        if i == 0 {
            insta::assert_json_snapshot!("error_700023_wrong_audience", v);
        }
    }
    // An audience array containing the token endpoint is accepted.
    let mut aud_list = good_claims.clone();
    aud_list["aud"] = json!(["https://example.com/other", url]);
    let (status, _, body) = read_json(
        post(collector.sign(JwsAlg::RS256, &rs256_header(&collector), &aud_list))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let other = "12345678-1234-1234-1234-123456789abc";
    let v = expect_error(
        &em,
        post(collector.sign(
            JwsAlg::RS256,
            &rs256_header(&collector),
            &claims(other, other, &url),
        )),
        401,
        700021,
    )
    .await;
    insta::assert_json_snapshot!("error_700021_issuer_not_client", v);
    let v = expect_error(
        &em,
        post(collector.sign(
            JwsAlg::RS256,
            &rs256_header(&collector),
            &claims(COLLECTOR, other, &url),
        )),
        401,
        50048,
    )
    .await;
    insta::assert_json_snapshot!("error_50048_subject_not_issuer", v);

    let v = expect_error(&em, post("abc".into()), 400, 50027).await;
    insta::assert_json_snapshot!("error_50027_garbage", v);
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "x5t": collector.x5t()})),
        b64(&good_claims)
    );
    expect_error(&em, post(alg_none), 400, 50027).await;
    let hs256 = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "HS256", "typ": "JWT", "x5t": collector.x5t()})),
        b64(&good_claims),
        URL_SAFE_NO_PAD.encode([7u8; 32])
    );
    expect_error(&em, post(hs256), 400, 50027).await;
    let v = expect_error(
        &em,
        post(collector.sign(
            JwsAlg::RS256,
            &json!({"alg": "RS256", "typ": "JWT"}),
            &good_claims,
        )),
        400,
        50027,
    )
    .await;
    assert!(first_line(&v).contains("No certificate thumbprint specified"));
    insta::assert_json_snapshot!("error_50027_no_thumbprint", v);
    let mut string_exp = good_claims.clone();
    string_exp["exp"] = json!(format!("{}", now + 600));
    expect_error(
        &em,
        post(collector.sign(JwsAlg::RS256, &rs256_header(&collector), &string_exp)),
        400,
        50027,
    )
    .await;
    // A thumbprint of the wrong length is malformed, not an unknown key.
    expect_error(
        &em,
        post(collector.sign(
            JwsAlg::RS256,
            &json!({"alg": "RS256", "x5t": URL_SAFE_NO_PAD.encode([1u8; 19])}),
            &good_claims,
        )),
        400,
        50027,
    )
    .await;

    // The assertion type must be the JWT-bearer URN.
    let assertion = collector.sign(JwsAlg::RS256, &rs256_header(&collector), &good_claims);
    let mut form = assertion_form_v2(COLLECTOR, &assertion);
    form.retain(|(k, _)| *k != "client_assertion_type");
    let v = expect_error(&em, http.post(&url).form(&form), 400, 900144).await;
    assert!(first_line(&v).contains("'client_assertion_type'"));
    form.push(("client_assertion_type", "urn:something:else".into()));
    expect_error(&em, http.post(&url).form(&form), 400, 900144).await;

    // With the clock frozen, the envelope's timestamp is the frozen instant.
    let (_, _, body) = read_json(post("abc".into()).send().await.unwrap()).await;
    assert_eq!(body["timestamp"], "2030-01-02 03:04:05Z");
}

#[tokio::test]
async fn request_format_errors() {
    let em = start().await;
    let http = client(&em);
    let v2 = token_url_v2(&em, CONTOSO);
    let v1 = token_url_v1(&em, CONTOSO);
    let secret_form = secret_form_v2(COLLECTOR, COLLECTOR_SECRET);
    let without = |name: &str| {
        let mut f = secret_form.clone();
        f.retain(|(k, _)| *k != name);
        f
    };
    let with = |name: &'static str, value: &str| {
        let mut f = without(name);
        f.push((name, value.to_string()));
        f
    };

    let v = expect_error(
        &em,
        http.post(&v2).form(&without("grant_type")),
        400,
        900144,
    )
    .await;
    assert!(first_line(&v).contains("'grant_type'"));
    insta::assert_json_snapshot!("error_900144_missing_grant_type", v);
    // Token endpoints take POST only.
    let v = expect_error(&em, http.get(&v2), 400, 900561).await;
    assert_eq!(
        first_line(&v),
        "AADSTS900561: The endpoint only accepts POST requests. Received a GET request."
    );
    insta::assert_json_snapshot!("error_900561_get_on_token_endpoint", v);
    expect_error(&em, http.put(&v1).form(&secret_form), 400, 900561).await;
    let v = expect_error(&em, http.post(&v2).form(&without("scope")), 400, 900144).await;
    assert!(first_line(&v).contains("'scope'"));
    insta::assert_json_snapshot!("error_900144_missing_scope", v);
    // v1 wants `resource`; a v2 `scope` is no substitute.
    let v = expect_error(&em, http.post(&v1).form(&secret_form), 400, 900144).await;
    assert!(first_line(&v).contains("'resource'"));
    insta::assert_json_snapshot!("error_900144_missing_resource", v);
    let v = expect_error(&em, http.post(&v2).form(&without("client_id")), 400, 900144).await;
    assert!(first_line(&v).contains("'client_id'"));
    // Parameters count only in the body.
    let v = expect_error(
        &em,
        http.post(format!("{v2}?grant_type=client_credentials"))
            .form(&without("grant_type")),
        400,
        900144,
    )
    .await;
    assert!(first_line(&v).contains("'grant_type'"));
    insta::assert_json_snapshot!("error_900144_grant_type_in_query", v);
    // A JSON body carries no form parameters.
    let as_json: serde_json::Map<String, Value> = secret_form
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let v = expect_error(&em, http.post(&v2).json(&as_json), 400, 900144).await;
    assert!(first_line(&v).contains("'grant_type'"));
    insta::assert_json_snapshot!("error_900144_json_body", v);

    let v = expect_error(
        &em,
        http.post(&v2).form(&with("grant_type", "password_foo")),
        400,
        70003,
    )
    .await;
    assert!(first_line(&v).contains("'password_foo'"));
    insta::assert_json_snapshot!("error_70003_unsupported_grant_type", v);

    let v = expect_error(
        &em,
        http.post(&v2).form(&with(
            "scope",
            "https://manage.office.com/ActivityFeed.Read",
        )),
        400,
        1002012,
    )
    .await;
    insta::assert_json_snapshot!("error_1002012_scope_without_default", v);
    let v = expect_error(
        &em,
        http.post(&v2).form(&with(
            "scope",
            "https://manage.office.com/.default https://graph.microsoft.com/.default",
        )),
        400,
        70011,
    )
    .await;
    insta::assert_json_snapshot!("error_70011_two_resources", v);
    expect_error(
        &em,
        http.post(&v2).form(&with("scope", "/.default")),
        400,
        70011,
    )
    .await;
    // The same resource twice is one resource.
    let (status, _, body) = post_form(
        &http,
        &v2,
        &with(
            "scope",
            "https://manage.office.com/.default https://manage.office.com/.default",
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let v = expect_error(
        &em,
        http.post(&v2)
            .form(&with("scope", "https://unknown.example.com/.default")),
        400,
        500011,
    )
    .await;
    assert!(first_line(&v)
        .contains("https://unknown.example.com was not found in the tenant named Contoso"));
    insta::assert_json_snapshot!("error_500011_unknown_resource", v);
    let mut v1_form = without("scope");
    v1_form.push(("resource", "https://unknown.example.com".into()));
    expect_error(&em, http.post(&v1).form(&v1_form), 400, 500011).await;

    let form_ct = (
        reqwest::header::CONTENT_TYPE,
        "application/x-www-form-urlencoded",
    );
    let v = expect_error(
        &em,
        http.post(&v2)
            .header(form_ct.0.clone(), form_ct.1)
            .body(b"grant_type=%ff".to_vec()),
        400,
        9002313,
    )
    .await;
    assert!(first_line(&v).contains("not valid UTF-8"));
    insta::assert_json_snapshot!("error_9002313_not_utf8", v);
    expect_error(
        &em,
        http.post(&v2)
            .header(form_ct.0.clone(), form_ct.1)
            .body(b"grant_type=client_credentials&client_secret=\xfe\xff".to_vec()),
        400,
        9002313,
    )
    .await;
    expect_error(
        &em,
        http.post(&v2)
            .header(form_ct.0.clone(), form_ct.1)
            .body(b"grant_type=%zz".to_vec()),
        400,
        9002313,
    )
    .await;

    let big = vec![b'a'; 2 * 1024 * 1024];
    let v = expect_error(
        &em,
        http.post(&v2)
            .header(form_ct.0.clone(), form_ct.1)
            .body(big),
        413,
        9002313,
    )
    .await;
    assert!(first_line(&v).contains("too large"));
    insta::assert_json_snapshot!("error_413_body_too_large", v);

    // correlation_id echoes a GUID client-request-id (header, or MSAL Node's query copy).
    let request_id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let (status, headers, body) = read_json(
        http.post(&v2)
            .header("client-request-id", request_id)
            .form(&without("grant_type"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    check_error(&em, status, &headers, &body, 400, 900144);
    assert_eq!(body["correlation_id"], request_id);
    assert_eq!(header(&headers, "client-request-id"), request_id);
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains(&format!("\r\nCorrelation ID: {request_id}\r\n")));
    let (status, headers, body) = read_json(
        http.post(format!("{v2}?client-request-id={request_id}"))
            .form(&without("grant_type"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    check_error(&em, status, &headers, &body, 400, 900144);
    assert_eq!(body["correlation_id"], request_id);
    // Not a GUID: not echoed, a fresh correlation id instead.
    let (status, headers, body) = read_json(
        http.post(&v2)
            .header("client-request-id", "not-a-guid")
            .form(&without("grant_type"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    check_error(&em, status, &headers, &body, 400, 900144);
    assert_ne!(body["correlation_id"], "not-a-guid");
    assert!(headers.get("client-request-id").is_none());
    // A success echoes it as a header too.
    let (status, headers, _) = read_json(
        http.post(&v2)
            .header("client-request-id", request_id)
            .form(&secret_form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "client-request-id"), request_id);

    // Two errors never share a trace id.
    let (_, _, a) = post_form(&http, &v2, &without("grant_type")).await;
    let (_, _, b) = post_form(&http, &v2, &without("grant_type")).await;
    assert_ne!(a["trace_id"], b["trace_id"]);
    assert_ne!(a["correlation_id"], b["correlation_id"]);
}

// -------------------------------------------------------------------------------------------
// 3. Discovery
// -------------------------------------------------------------------------------------------

/// Checks one JWKS key: kid == x5t == base64url SHA-1 of the x5c DER, and n/e are the
/// certificate's public key.
fn check_jwk(key: &Value, with_issuer: bool) {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::traits::PublicKeyParts;
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    let x5c = key["x5c"].as_array().expect("x5c");
    assert_eq!(x5c.len(), 1);
    let der = STANDARD
        .decode(x5c[0].as_str().unwrap())
        .expect("x5c is standard base64");
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
    let thumb = URL_SAFE_NO_PAD.encode(sha1.as_ref());
    assert_eq!(key["kid"], thumb.as_str());
    assert_eq!(key["x5t"], thumb.as_str());
    let cert = CertInfo::from_der(&der, "jwks x5c").expect("x5c is a certificate");
    let pk = rsa::RsaPublicKey::from_pkcs1_der(&cert.rsa_public_key).expect("RSA key");
    assert_eq!(
        key["n"],
        URL_SAFE_NO_PAD.encode(pk.n().to_bytes_be()).as_str()
    );
    assert_eq!(
        key["e"],
        URL_SAFE_NO_PAD.encode(pk.e().to_bytes_be()).as_str()
    );
    assert_eq!(key["e"], "AQAB");
    if with_issuer {
        assert_eq!(
            key["issuer"],
            "https://login.microsoftonline.com/{tenantid}/v2.0"
        );
    } else {
        assert!(key.get("issuer").is_none(), "v1 keys carry no issuer");
    }
}

fn redact_jwks(jwks: &Value) -> Value {
    let mut v = jwks.clone();
    for k in v["keys"].as_array_mut().unwrap() {
        for f in ["kid", "x5t", "n"] {
            k[f] = json!(format!("[{f}]"));
        }
        k["x5c"] = json!(["[x5c]"]);
    }
    v
}

#[tokio::test]
async fn discovery_documents_jwks_and_instance_discovery() {
    let em = start().await;
    let http = client(&em);
    let base = em.https_uri();

    // v2, tenant by domain: endpoints and issuer use the GUID.
    let (status, headers, doc) = get_json(
        &http,
        &format!("{base}/{CONTOSO_DOMAIN}/v2.0/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        "application/json; charset=utf-8"
    );
    assert_eq!(
        doc["token_endpoint"],
        format!("{base}/{CONTOSO}/oauth2/v2.0/token")
    );
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{base}/{CONTOSO}/oauth2/v2.0/authorize")
    );
    assert_eq!(
        doc["jwks_uri"],
        format!("{base}/{CONTOSO}/discovery/v2.0/keys")
    );
    assert_eq!(
        doc["issuer"],
        format!("https://login.microsoftonline.com/{CONTOSO}/v2.0")
    );
    for field in [
        "authorization_endpoint",
        "token_endpoint",
        "issuer",
        "jwks_uri",
    ] {
        assert!(doc[field].is_string(), "msal-common requires {field}");
    }
    insta::assert_json_snapshot!("discovery_v2_contoso", redact_origin(&doc, &em));
    // The discovered jwks_uri and token_endpoint work.
    let (status, _, keys) = get_json(&http, doc["jwks_uri"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert!(!kids(&keys).is_empty());
    let (status, _, body) = post_form(
        &http,
        doc["token_endpoint"].as_str().unwrap(),
        &secret_form_v2(COLLECTOR, COLLECTOR_SECRET),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // v1, tenant by domain.
    let (status, _, doc) = get_json(
        &http,
        &format!("{base}/{CONTOSO_DOMAIN}/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        doc["token_endpoint"],
        format!("{base}/{CONTOSO}/oauth2/token")
    );
    assert_eq!(doc["issuer"], format!("https://sts.windows.net/{CONTOSO}/"));
    assert_eq!(doc["jwks_uri"], format!("{base}/common/discovery/keys"));
    assert_eq!(doc["microsoft_multi_refresh_token"], true);
    insta::assert_json_snapshot!("discovery_v1_contoso", redact_origin(&doc, &em));

    // common: the literal {tenantid} placeholder in the issuer.
    let (status, _, doc) = get_json(
        &http,
        &format!("{base}/common/v2.0/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        doc["issuer"],
        "https://login.microsoftonline.com/{tenantid}/v2.0"
    );
    assert_eq!(
        doc["token_endpoint"],
        format!("{base}/common/oauth2/v2.0/token")
    );
    insta::assert_json_snapshot!("discovery_v2_common", redact_origin(&doc, &em));
    let (status, _, doc) = get_json(
        &http,
        &format!("{base}/common/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(doc["issuer"], "https://sts.windows.net/{tenantid}/");
    insta::assert_json_snapshot!("discovery_v1_common", redact_origin(&doc, &em));

    // An unknown tenant: 400 with the 90002 envelope (what MSAL Python expects).
    for path in [
        "v2.0/.well-known/openid-configuration",
        ".well-known/openid-configuration",
        "discovery/v2.0/keys",
    ] {
        let (status, headers, body) =
            get_json(&http, &format!("{base}/unknown-tenant.example.com/{path}")).await;
        let v = check_error(&em, status, &headers, &body, 400, 90002);
        if path.starts_with("v2.0") {
            insta::assert_json_snapshot!("discovery_unknown_tenant", v);
        }
    }

    // JWKS v1 (no issuer) and v2 (issuer placeholder); the same keys.
    let (status, _, v1_keys) = get_json(&http, &format!("{base}/common/discovery/keys")).await;
    assert_eq!(status, 200);
    for k in v1_keys["keys"].as_array().unwrap() {
        check_jwk(k, false);
    }
    insta::assert_json_snapshot!("jwks_v1", redact_jwks(&v1_keys));
    let (status, _, v2_keys) =
        get_json(&http, &format!("{base}/{CONTOSO}/discovery/v2.0/keys")).await;
    assert_eq!(status, 200);
    for k in v2_keys["keys"].as_array().unwrap() {
        check_jwk(k, true);
    }
    insta::assert_json_snapshot!("jwks_v2", redact_jwks(&v2_keys));
    assert_eq!(kids(&v1_keys), kids(&v2_keys));
    // The published key verifies issued tokens (and is the one the control plane calls active).
    let (_, _, admin_keys) = get_json(&http, &format!("{base}/_emulator/keys")).await;
    assert_eq!(kids(&v2_keys), [admin_keys["active_kid"].as_str().unwrap()]);
    let token = secret_token(&http, &em, CONTOSO).await;
    verify_token(
        &token,
        &v1_keys,
        MANAGE,
        &format!("https://sts.windows.net/{CONTOSO}/"),
    )
    .expect("a token verifies against the v1 JWKS");

    // Instance discovery: MSAL JS sends the authorization endpoint unencoded.
    let authorize = format!("{base}/{CONTOSO}/oauth2/v2.0/authorize");
    let (status, _, inst) = get_json(
        &http,
        &format!(
            "{base}/common/discovery/instance?api-version=1.1&authorization_endpoint={authorize}"
        ),
    )
    .await;
    assert_eq!(status, 200, "{inst}");
    assert_eq!(
        inst["tenant_discovery_endpoint"],
        format!("{base}/{CONTOSO}/v2.0/.well-known/openid-configuration")
    );
    let authority = base.strip_prefix("https://").unwrap();
    assert_eq!(
        inst["metadata"],
        json!([{"preferred_network": authority, "preferred_cache": authority, "aliases": [authority]}])
    );
    insta::assert_json_snapshot!("instance_discovery", redact_origin(&inst, &em));
    // MSAL Python encodes it and uses api-version 1.0; the tenant_discovery_endpoint works.
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("authorization_endpoint", &authorize)
        .append_pair("api-version", "1.0")
        .finish();
    assert!(query.contains("https%3A%2F%2F"), "{query}");
    let resp = http
        .get(format!("{base}/common/discovery/instance?{query}"))
        .send()
        .await
        .unwrap();
    let (status, _, inst) = read_json(resp).await;
    assert_eq!(status, 200, "{inst}");
    assert_eq!(inst["api-version"], "1.0");
    let (status, _, doc) =
        get_json(&http, inst["tenant_discovery_endpoint"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        doc["token_endpoint"],
        format!("{base}/{CONTOSO}/oauth2/v2.0/token")
    );
    // Public-cloud hosts answer with Microsoft's alias set.
    let (status, _, inst) = get_json(
        &http,
        &format!("{base}/common/discovery/instance?api-version=1.1&authorization_endpoint=https://login.microsoftonline.com/common/oauth2/v2.0/authorize"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        inst["metadata"][0]["aliases"],
        json!([
            "login.microsoftonline.com",
            "login.windows.net",
            "login.microsoft.com",
            "sts.windows.net"
        ])
    );
    insta::assert_json_snapshot!("instance_discovery_public_cloud", inst);
    // An unknown host: invalid_instance.
    let (status, headers, body) = get_json(
        &http,
        &format!("{base}/common/discovery/instance?api-version=1.1&authorization_endpoint=https://idp.unknown.example.com/{CONTOSO}/oauth2/v2.0/authorize"),
    )
    .await;
    let v = check_error(&em, status, &headers, &body, 400, 50049);
    assert_eq!(v["error"], "invalid_instance");
    insta::assert_json_snapshot!("instance_discovery_unknown_host", v);
}

// -------------------------------------------------------------------------------------------
// 4. Control plane: key credentials and signing-key rotation
// -------------------------------------------------------------------------------------------

async fn key_credentials(
    http: &reqwest::Client,
    emulator: &Emulator,
    client_id: &str,
) -> Vec<Value> {
    let (status, _, body) = get_json(
        http,
        &format!(
            "{}/_emulator/applications/{client_id}/keyCredentials",
            emulator.https_uri()
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["keyCredentials"].as_array().expect("array").clone()
}

#[tokio::test]
async fn admin_key_credentials_register_a_certificate_until_reset() {
    let em = start().await;
    let http = client(&em);
    let base = em.https_uri().to_string();
    let collector = AppCredential::load(&em, COLLECTOR);
    let teams = AppCredential::load(&em, TEAMS_PHONE);
    let url = token_url_v2(&em, CONTOSO);
    let admin_url = format!("{base}/_emulator/applications/{COLLECTOR}/keyCredentials");
    let foreign_assertion = |alg: JwsAlg| {
        let now = em.clock().now().unix_timestamp();
        match alg {
            JwsAlg::RS256 => teams.msal_python_assertion(COLLECTOR, &url, now),
            JwsAlg::PS256 => teams.msal_node_assertion(COLLECTOR, &url, now),
        }
    };
    let initial = key_credentials(&http, &em, COLLECTOR).await;
    assert_eq!(initial.len(), 1);
    assert_eq!(initial[0]["thumbprint_sha1"], collector.cert.sha1_hex());
    assert_eq!(initial[0]["origin"], "generated");

    // Before registration the Teams-phone certificate is unknown to the collector.
    expect_error(
        &em,
        http.post(&url).form(&assertion_form_v2(
            COLLECTOR,
            &foreign_assertion(JwsAlg::RS256),
        )),
        401,
        700027,
    )
    .await;

    let key_id = "6c1f0cda-7b5a-4f1f-9a5e-2b7e6e0c3d11";
    let good = json!({
        "customKeyIdentifier": STANDARD.encode(teams.cert.sha1),
        "keyId": key_id,
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
        "value": teams.x5c(),
        "displayName": "CN=Teams phone (test)",
    });
    let mut wrong_type = good.clone();
    wrong_type["type"] = json!("Symmetric");
    let mut wrong_usage = good.clone();
    wrong_usage["usage"] = json!("Sign");
    let mut bad_base64 = good.clone();
    bad_base64["value"] = json!("!!! not base64 !!!");
    let mut not_a_cert = good.clone();
    not_a_cert["value"] = json!(STANDARD.encode(b"definitely not DER"));
    let mut mismatch = good.clone();
    mismatch["customKeyIdentifier"] = json!(STANDARD.encode(collector.cert.sha1));
    for (what, body) in [
        ("type", json!({"keyCredentials": [wrong_type]})),
        ("usage", json!({"keyCredentials": [wrong_usage]})),
        ("base64", json!({"keyCredentials": [bad_base64]})),
        ("DER", json!({"keyCredentials": [not_a_cert]})),
        ("thumbprint", json!({"keyCredentials": [mismatch.clone()]})),
        // One bad entry spoils the whole request: the good one is not stored either.
        ("batch", json!({"keyCredentials": [good.clone(), mismatch]})),
        ("empty", json!({"keyCredentials": []})),
        ("shape", json!({"keyCredentials": "nope"})),
    ] {
        let (status, _, body) =
            read_json(http.post(&admin_url).json(&body).send().await.unwrap()).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"]["code"], "BadRequest", "{what}");
        assert!(body["error"]["message"].is_string());
        assert_eq!(
            key_credentials(&http, &em, COLLECTOR).await.len(),
            1,
            "{what}: nothing stored"
        );
    }
    let (status, _, body) = read_json(
        http.post(&admin_url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = read_json(
        http.post(format!(
            "{base}/_emulator/applications/99999999-8888-7777-6666-555555555555/keyCredentials"
        ))
        .json(&json!({"keyCredentials": [good.clone()]}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    expect_error(
        &em,
        http.post(&url).form(&assertion_form_v2(
            COLLECTOR,
            &foreign_assertion(JwsAlg::PS256),
        )),
        401,
        700027,
    )
    .await;

    // Register it (manifest format).
    let (status, _, body) = read_json(
        http.post(&admin_url)
            .json(&json!({"keyCredentials": [good.clone()]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let list = body["keyCredentials"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let added = list
        .iter()
        .find(|c| c["keyId"] == key_id)
        .expect("the new keyId is listed");
    assert_eq!(added["thumbprint_sha1"], teams.cert.sha1_hex());
    assert_eq!(added["thumbprint_sha256"], teams.cert.sha256_hex());
    assert_eq!(
        added["customKeyIdentifier"],
        STANDARD.encode(teams.cert.sha1)
    );
    assert_eq!(added["origin"], "admin_api");
    assert_eq!(added["type"], "AsymmetricX509Cert");
    assert_eq!(added["usage"], "Verify");
    insta::assert_json_snapshot!("admin_key_credential_added", added, {
        ".customKeyIdentifier" => "[sha1-base64]",
        ".thumbprint_sha1" => "[sha1]",
        ".thumbprint_sha256" => "[sha256]",
    });
    // Registering the same certificate again (as PEM this time) changes nothing.
    let mut again = good.clone();
    again["value"] = json!(teams.certificate_pem);
    let (status, _, body) = read_json(
        http.post(&admin_url)
            .json(&json!({"keyCredentials": [again]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["keyCredentials"].as_array().unwrap().len(), 2);

    // Now an assertion for the collector signed with that key succeeds, in both styles.
    let jwks = jwks(&http, &em).await;
    for alg in [JwsAlg::RS256, JwsAlg::PS256] {
        let (status, _, body) = post_form(
            &http,
            &url,
            &assertion_form_v2(COLLECTOR, &foreign_assertion(alg)),
        )
        .await;
        assert_eq!(status, 200, "{alg:?}: {body}");
        let (_, claims) = verify_token(
            body["access_token"].as_str().unwrap(),
            &jwks,
            MANAGE,
            &format!("https://sts.windows.net/{CONTOSO}/"),
        )
        .expect("verifies");
        check_app_claims(
            &claims,
            CONTOSO,
            COLLECTOR,
            "2",
            MANAGE,
            Some(&CONTOSO_ROLES),
        );
    }
    // The collector's own certificate still works.
    let own = collector.msal_python_assertion(COLLECTOR, &url, em.clock().now().unix_timestamp());
    let (status, _, body) = post_form(&http, &url, &assertion_form_v2(COLLECTOR, &own)).await;
    assert_eq!(status, 200, "{body}");

    // Reset restores the world as seeded: the registration is gone.
    let (status, _, body) = read_json(
        http.post(format!("{base}/_emulator/reset"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(key_credentials(&http, &em, COLLECTOR).await.len(), 1);
    expect_error(
        &em,
        http.post(&url).form(&assertion_form_v2(
            COLLECTOR,
            &foreign_assertion(JwsAlg::RS256),
        )),
        401,
        700027,
    )
    .await;

    // A single entry object is accepted too, and DELETE removes it by keyId.
    let (status, _, body) =
        read_json(http.post(&admin_url).json(&good).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = post_form(
        &http,
        &url,
        &assertion_form_v2(COLLECTOR, &foreign_assertion(JwsAlg::RS256)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let resp = http
        .delete(format!("{admin_url}/{key_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let resp = http
        .delete(format!("{admin_url}/{key_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    expect_error(
        &em,
        http.post(&url).form(&assertion_form_v2(
            COLLECTOR,
            &foreign_assertion(JwsAlg::RS256),
        )),
        401,
        700027,
    )
    .await;
}

#[tokio::test]
async fn signing_key_rotation_keeps_the_old_key_published_for_the_overlap() {
    let em = start().await;
    let http = client(&em);
    let base = em.https_uri().to_string();
    let iss = format!("https://sts.windows.net/{CONTOSO}/");
    let (_, _, keys) = get_json(&http, &format!("{base}/_emulator/keys")).await;
    let old_kid = keys["active_kid"].as_str().unwrap().to_string();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    let old_token = secret_token(&http, &em, CONTOSO).await;
    assert_eq!(raw_header(&old_token)["kid"], old_kid.as_str());

    // Invalid requests change nothing.
    for bad in [
        json!({"overlap_seconds": -1}),
        json!({"overlap_seconds": 365 * 86_400 + 1}),
        json!({"overlap": 600}),
    ] {
        let (status, _, body) = read_json(
            http.post(format!("{base}/_emulator/keys/rotate"))
                .json(&bad)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (_, _, keys) = get_json(&http, &format!("{base}/_emulator/keys")).await;
    assert_eq!(keys["active_kid"], old_kid.as_str());

    let (status, _, rotated) = read_json(
        http.post(format!("{base}/_emulator/keys/rotate"))
            .json(&json!({"overlap_seconds": 600}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new_kid = rotated["active_kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid);
    let listed = rotated["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let entry = |kid: &str| {
        listed
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap_or_else(|| panic!("{kid} listed"))
            .clone()
    };
    assert_eq!(entry(&new_kid)["active"], true);
    assert!(entry(&new_kid)["retire_at"].is_null());
    assert_eq!(entry(&old_kid)["active"], false);
    let retire_at = time::OffsetDateTime::parse(
        entry(&old_kid)["retire_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339 retire_at");
    let overlap = retire_at - em.clock().now();
    assert!(
        overlap <= time::Duration::seconds(600) && overlap > time::Duration::seconds(590),
        "{overlap}"
    );

    // Both keys published; the old token still verifies, new tokens use the new key.
    let jwks_both = jwks(&http, &em).await;
    let mut published = kids(&jwks_both);
    published.sort();
    let mut expected = vec![old_kid.clone(), new_kid.clone()];
    expected.sort();
    assert_eq!(published, expected);
    for k in jwks_both["keys"].as_array().unwrap() {
        check_jwk(k, true);
    }
    let (_, _, v1_jwks) = get_json(&http, &format!("{base}/common/discovery/keys")).await;
    assert_eq!(kids(&v1_jwks).len(), 2);
    verify_token(&old_token, &jwks_both, MANAGE, &iss).expect("old token verifies");
    let new_token = secret_token(&http, &em, CONTOSO).await;
    let (header, _) = verify_token(&new_token, &jwks_both, MANAGE, &iss).expect("new token");
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
    assert_eq!(header.x5t.as_deref(), Some(new_kid.as_str()));
    // Each token is signed by its own key, not just any published one.
    let only = |kid: &str| {
        let mut j = jwks_both.clone();
        j["keys"]
            .as_array_mut()
            .unwrap()
            .retain(|k| k["kid"] == kid);
        j
    };
    let mut swapped = only(&old_kid);
    swapped["keys"][0]["kid"] = json!(new_kid);
    assert!(verify_token(&new_token, &swapped, MANAGE, &iss).is_err());

    // After the overlap only the new key remains.
    em.clock().advance(time::Duration::seconds(601));
    let jwks_after = jwks(&http, &em).await;
    assert_eq!(kids(&jwks_after), [new_kid.as_str()]);
    let (_, _, v1_after) = get_json(&http, &format!("{base}/common/discovery/keys")).await;
    assert_eq!(kids(&v1_after), [new_kid.as_str()]);
    let (_, _, keys) = get_json(&http, &format!("{base}/_emulator/keys")).await;
    assert_eq!(keys["active_kid"], new_kid.as_str());
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    let err = verify_token(&old_token, &jwks_after, MANAGE, &iss).unwrap_err();
    assert!(err.contains("not in the JWKS"), "{err}");
    verify_token(&new_token, &jwks_after, MANAGE, &iss).expect("new token still verifies");
}

// -------------------------------------------------------------------------------------------
// 5. Persistence across restarts
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn state_directory_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = start_with(Emulator::builder().key_seed(42).state_dir(dir.path())).await;
    assert!(dir.path().join("ready.json").exists());
    let http = client(&first);
    let ca = first.ca_pem().to_string();
    let thumbprint = AppCredential::load(&first, COLLECTOR).cert.sha1_hex();
    let (_, _, keys) = get_json(&http, &format!("{}/_emulator/keys", first.https_uri())).await;
    let kid = keys["active_kid"].as_str().unwrap().to_string();
    let token = secret_token(&http, &first, CONTOSO).await;
    drop(http);
    tokio::time::timeout(std::time::Duration::from_secs(30), first.shutdown())
        .await
        .expect("shutdown finishes");
    assert!(
        !dir.path().join("ready.json").exists(),
        "shutdown removes the ready file"
    );

    // No seed this time: whatever matches was loaded from the state directory.
    let second = start_with(Emulator::builder().state_dir(dir.path())).await;
    let http = client(&second);
    assert_eq!(second.ca_pem(), ca, "same CA");
    let collector = AppCredential::load(&second, COLLECTOR);
    assert_eq!(
        collector.cert.sha1_hex(),
        thumbprint,
        "same client certificate"
    );
    let (_, _, keys) = get_json(&http, &format!("{}/_emulator/keys", second.https_uri())).await;
    assert_eq!(keys["active_kid"], kid.as_str(), "same signing key");
    let jwks = jwks(&http, &second).await;
    verify_token(
        &token,
        &jwks,
        MANAGE,
        &format!("https://sts.windows.net/{CONTOSO}/"),
    )
    .expect("a token from before the restart verifies after it");
    // The persisted client key still authenticates.
    let url = token_url_v2(&second, CONTOSO);
    let assertion =
        collector.msal_node_assertion(COLLECTOR, &url, second.clock().now().unix_timestamp());
    let (status, _, body) = post_form(&http, &url, &assertion_form_v2(COLLECTOR, &assertion)).await;
    assert_eq!(status, 200, "{body}");
    drop(http);
    second.shutdown().await;
}
