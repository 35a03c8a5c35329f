//! Black-box tests of the Entra user flows over real sockets (HTTPS, the emulator's own CA,
//! redirects never followed, the session cookie carried by hand from `set-cookie`):
//!
//! 1. seed 002's story: Northwind's admin grants admin consent to Contoso's collector through
//!    the v1 authorize endpoint, the sign-in and consent pages; the code is redeemed, and
//!    app-only tokens for Northwind start to work;
//! 2. v2 authorization code with PKCE (S256 and plain), the session cookie, `fragment` and
//!    `form_post` response modes, refresh tokens and the password grant;
//! 3. the errors of these flows: pages (never redirects) before the redirect URI is trusted,
//!    error redirects after, token-endpoint errors, CSRF and markup injection;
//! 4. the headless path (`auto_sign_in`);
//! 5. what the journal records about them.
//!
//! Tokens are verified with jsonwebtoken against the published JWKS; PKCE uses the RFC 7636
//! Appendix B verifier/challenge pair, computed independently of the emulator.

mod support;

use std::future::Future;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use m365_emulator::journal::{JournalEntry, JournalQuery};
use m365_emulator::Emulator;
use reqwest::header::HeaderMap;
use serde_json::{json, Map, Value};
use support::*;

const NORTHWIND: &str = "7bc28254-818f-4f09-a860-6fcae669c511";
const NORTHWIND_ADMIN: &str = "admin@northwind.onmicrosoft.com";
const NORTHWIND_ADMIN_PASSWORD: &str = "Northwind-Admin-1!";
const NORTHWIND_ADMIN_OID: &str = "f56e6b06-24ca-4281-95ce-e0efa67b36bb";
const NESTOR: &str = "nestor@northwind.onmicrosoft.com";
const NESTOR_PASSWORD: &str = "Nestor-Pass-1!";
const NESTOR_OID: &str = "5d0c7b0e-52c4-4b43-9d8c-0f5ad3c1a001";
const ADELE: &str = "adele@contoso.onmicrosoft.com";
const ADELE_PASSWORD: &str = "Adele-Pass-1!";
const ADELE_OID: &str = "61927486-f404-463f-b72a-7aa7c4ad5433";
const COLLECTOR_REPLY: &str = "https://localhost:5001/signin";
const TEAMS_PHONE_SECRET: &str = "teams-phone-secret~0123456789abcdefghij";
const TEAMS_PHONE_REPLY: &str = "https://localhost:5003/auth/callback";
/// Contoso's Teams client: a single-tenant public client (no credential).
const TEAMS_CLIENT: &str = "81a839dc-b25b-4552-bb03-aa9fa33cc6a0";
const GRAPH: &str = "https://graph.microsoft.com";
const ACS: &str = "https://communication.azure.com";
const USER_SCOPE: &str = "openid profile offline_access https://graph.microsoft.com/User.Read";
const COLLECTOR_ROLES: [&str; 3] = [
    "ActivityFeed.Read",
    "ActivityFeed.ReadDlp",
    "ServiceHealth.Read",
];
/// RFC 7636 Appendix B: the verifier and its S256 challenge.
const RFC7636_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const RFC7636_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const SESSION_COOKIE: &str = "m365emu_session";
const XSS_STATE: &str = "<script>alert(1)</script>";
const XSS_HINT: &str = "\"><img src=x onerror=alert(1)>";
/// The errors test runs on a frozen clock, so that dates in messages are stable.
const FROZEN: time::OffsetDateTime = time::macros::datetime!(2030-01-02 03:04:05 UTC);
/// Upper bound for a whole test (each HTTP exchange and start is bounded on its own too).
const TEST_TIMEOUT: Duration = Duration::from_secs(300);

async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("the test finishes in time");
}

// -------------------------------------------------------------------------------------------
// HTTP and HTML helpers
// -------------------------------------------------------------------------------------------

/// A response read completely: status, headers, body text.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

async fn send(rb: reqwest::RequestBuilder, cookie: Option<&str>) -> Reply {
    let rb = match cookie {
        Some(c) => rb.header(reqwest::header::COOKIE, c),
        None => rb,
    };
    let resp = rb.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("response body");
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(http: &reqwest::Client, url: &str, cookie: Option<&str>) -> Reply {
    send(http.get(url), cookie).await
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
    cookie: Option<&str>,
) -> Reply {
    send(http.post(url).form(form), cookie).await
}

/// `base` with the parameters of `overrides` replacing (or, if new, added to) its own; an
/// override with an empty value removes the parameter.
fn merged<'a>(
    base: &[(&'a str, &'a str)],
    overrides: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<(&str, &str)> = base
        .iter()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .copied()
        .collect();
    out.extend(overrides.iter().filter(|(_, v)| !v.is_empty()).copied());
    out
}

fn authorize_url(em: &Emulator, tenant: &str, v2: bool, params: &[(&str, &str)]) -> String {
    let path = if v2 {
        "oauth2/v2.0/authorize"
    } else {
        "oauth2/authorize"
    };
    reqwest::Url::parse_with_params(&format!("{}/{tenant}/{path}", em.https_uri()), params)
        .expect("authorize URL")
        .to_string()
}

/// A v2 authorize request of the Teams-phone backend for Adele's Graph profile, in Contoso.
fn teams_authorize(em: &Emulator, overrides: &[(&str, &str)]) -> String {
    let base = [
        ("client_id", TEAMS_PHONE),
        ("response_type", "code"),
        ("redirect_uri", TEAMS_PHONE_REPLY),
        ("scope", USER_SCOPE),
        ("state", "teams-state"),
    ];
    authorize_url(em, CONTOSO, true, &merged(&base, overrides))
}

/// Undoes the page escaping (`&amp;` last).
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The attribute value that follows `marker` (which ends with `="`), unescaped.
fn value_after(html: &str, marker: &str) -> Option<String> {
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(unescape(&html[start..start + end]))
}

fn hidden_input(html: &str, name: &str) -> Option<String> {
    value_after(
        html,
        &format!(r#"<input type="hidden" name="{name}" value=""#),
    )
}

/// The `name` and value of every hidden input, in page order.
fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let marker = r#"<input type="hidden" name=""#;
    html.match_indices(marker)
        .map(|(i, _)| {
            let rest = &html[i + marker.len()..];
            let name = &rest[..rest.find('"').expect("name ends")];
            let value = value_after(rest, r#"value=""#).expect("hidden input value");
            (unescape(name), value)
        })
        .collect()
}

/// The text between `start` and the next `end`.
fn between<'h>(html: &'h str, start: &str, end: &str) -> &'h str {
    let from = html
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} in {html}"))
        + start.len();
    let len = html[from..]
        .find(end)
        .unwrap_or_else(|| panic!("{end:?} after {start:?}"));
    &html[from..from + len]
}

/// A page's form: where it posts, and the flow and CSRF tokens it carries.
#[derive(Debug, Clone)]
struct PageForm {
    action: String,
    flow: String,
    csrf: String,
}

fn page_form(em: &Emulator, html: &str) -> PageForm {
    let action = value_after(html, r#"<form method="post" action=""#).expect("form action");
    let flow = hidden_input(html, "flow").expect("hidden flow");
    let csrf = hidden_input(html, "csrf").expect("hidden csrf");
    assert!(flow.len() >= 32 && csrf.len() >= 24, "unguessable tokens");
    assert_ne!(flow, csrf);
    PageForm {
        action: format!("{}{action}", em.https_uri()),
        flow,
        csrf,
    }
}

/// The headers of every sign-in and consent page.
fn assert_page_headers(headers: &HeaderMap) {
    assert_eq!(header(headers, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(headers, "cache-control"), "no-store, no-cache");
    assert_eq!(header(headers, "x-frame-options"), "DENY");
    let csp = header(headers, "content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(headers.get("location").is_none());
}

/// The page between the brand bar and the footer, with the flow and CSRF tokens redacted.
fn card(html: &str, form: Option<&PageForm>) -> String {
    let mut text = between(html, "m365-emulator</div>\n", "\n<footer>").to_string();
    if let Some(f) = form {
        text = text.replace(&f.flow, "[flow]").replace(&f.csrf, "[csrf]");
    }
    text
}

/// The `m365emu_session` cookie from `set-cookie`, ready for a `Cookie` header; checks its
/// attributes.
fn session_cookie(headers: &HeaderMap) -> String {
    let all: Vec<&str> = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ASCII cookie"))
        .collect();
    assert_eq!(all.len(), 1, "one cookie: {all:?}");
    let mut attrs = all[0].split("; ");
    let pair = attrs.next().expect("name=value");
    let (name, value) = pair.split_once('=').expect("name=value");
    assert_eq!(name, SESSION_COOKIE);
    assert!(value.len() >= 32, "unguessable session id: {value}");
    let attrs: Vec<&str> = attrs.collect();
    assert_eq!(attrs, ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"]);
    pair.to_string()
}

/// Opens `authorize` (the sign-in page, checked) and posts the credentials. Returns the page,
/// its form, and the answer to the login.
async fn sign_in(
    http: &reqwest::Client,
    em: &Emulator,
    authorize: &str,
    user: &str,
    password: &str,
) -> (String, PageForm, Reply) {
    let page = get(http, authorize, None).await;
    assert_eq!(page.status, 200, "sign-in page: {}", page.body);
    assert_page_headers(&page.headers);
    assert!(page.headers.get("set-cookie").is_none());
    assert!(page.body.contains("<h1>Sign in</h1>"), "{}", page.body);
    let form = page_form(em, &page.body);
    let reply = post(
        http,
        &form.action,
        &[
            ("flow", &form.flow),
            ("csrf", &form.csrf),
            ("username", user),
            ("password", password),
        ],
        None,
    )
    .await;
    (page.body, form, reply)
}

fn location(reply: &Reply) -> String {
    assert_eq!(reply.status, 302, "a redirect: {}", reply.body);
    assert_eq!(
        header(&reply.headers, "cache-control"),
        "no-store, no-cache"
    );
    header(&reply.headers, "location").to_string()
}

/// The parameters of a redirect to `redirect_uri`, in order, from its query or fragment.
fn redirect_params(location: &str, redirect_uri: &str, fragment: bool) -> Vec<(String, String)> {
    let sep = if fragment { '#' } else { '?' };
    let rest = location
        .strip_prefix(redirect_uri)
        .and_then(|r| r.strip_prefix(sep))
        .unwrap_or_else(|| panic!("{location} is {redirect_uri}{sep}…"));
    form_urlencoded::parse(rest.as_bytes())
        .into_owned()
        .collect()
}

fn names(params: &[(String, String)]) -> Vec<&str> {
    params.iter().map(|(k, _)| k.as_str()).collect()
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> &'p str {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("parameter {name} in {params:?}"))
}

fn params_json(params: &[(String, String)]) -> Value {
    let mut obj = Map::new();
    for (k, v) in params {
        obj.insert(k.clone(), json!(v));
    }
    Value::Object(obj)
}

/// A successful code redirect: `code`, then (if asked) `client_info`, `session_state`, any
/// `extra` names, `state`. Returns the parameters.
fn check_code_redirect(
    location: &str,
    redirect_uri: &str,
    fragment: bool,
    with_client_info: bool,
    extra: &[&str],
    state: &str,
) -> Vec<(String, String)> {
    let params = redirect_params(location, redirect_uri, fragment);
    let mut expected = vec!["code"];
    if with_client_info {
        expected.push("client_info");
    }
    expected.push("session_state");
    expected.extend(extra);
    expected.push("state");
    assert_eq!(names(&params), expected, "{location}");
    assert!(param(&params, "code").len() >= 43, "an opaque, long code");
    uuid::Uuid::parse_str(param(&params, "session_state")).expect("session_state is a GUID");
    assert_eq!(param(&params, "state"), state);
    params
}

/// Redacts a code redirect's volatile values for a snapshot.
fn redacted_code_params(params: &[(String, String)]) -> Value {
    let mut v = params_json(params);
    v["code"] = json!("[code]");
    v["session_state"] = json!("[session_state]");
    v
}

/// `AADSTS<code>: …\r\nTrace ID: <guid>\r\nCorrelation ID: <guid>\r\nTimestamp: <ts>`;
/// returns the first line.
fn check_description(description: &str, code: u32) -> String {
    let (first, tail) = description
        .split_once("\r\nTrace ID: ")
        .unwrap_or_else(|| panic!("a Trace ID tail: {description:?}"));
    assert!(
        first.starts_with(&format!("AADSTS{code}: ")),
        "starts with the code: {first}"
    );
    let (trace, rest) = tail
        .split_once("\r\nCorrelation ID: ")
        .expect("Correlation ID");
    let (correlation, timestamp) = rest.split_once("\r\nTimestamp: ").expect("Timestamp");
    uuid::Uuid::parse_str(trace).expect("trace id is a GUID");
    uuid::Uuid::parse_str(correlation).expect("correlation id is a GUID");
    check_timestamp(timestamp);
    first.to_string()
}

fn check_timestamp(ts: &str) {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    time::PrimitiveDateTime::parse(ts, &f).expect("timestamp YYYY-MM-DD HH:MM:SSZ");
}

/// An error sent back to the registered redirect URI (query mode): `error`,
/// `error_description`, `error_uri`, then `state`. Returns the parameters redacted.
fn check_redirect_error(
    em: &Emulator,
    reply: &Reply,
    redirect_uri: &str,
    error: &str,
    code: u32,
    state: &str,
) -> Value {
    let location = location(reply);
    assert!(reply.headers.get("set-cookie").is_none(), "no session");
    let params = redirect_params(&location, redirect_uri, false);
    assert_eq!(
        names(&params),
        ["error", "error_description", "error_uri", "state"],
        "{location}"
    );
    assert_eq!(param(&params, "error"), error, "{location}");
    assert_eq!(
        param(&params, "error_uri"),
        format!("{}/error?code={code}", em.https_uri())
    );
    assert_eq!(param(&params, "state"), state);
    let first = check_description(param(&params, "error_description"), code);
    let mut v = params_json(&params);
    v["error_description"] = json!(first);
    redact_origin(&v, em)
}

/// The error page shown instead of a redirect: status 400, HTML, no `Location`, the code and
/// the troubleshooting details. Returns the page body with the details redacted.
fn check_error_page(reply: &Reply, code: u32) -> String {
    assert_eq!(reply.status, 400, "error page for {code}: {}", reply.body);
    assert!(
        reply.headers.get("location").is_none(),
        "an error page never redirects"
    );
    assert!(reply.headers.get("set-cookie").is_none());
    assert_eq!(
        header(&reply.headers, "content-type"),
        "text/html; charset=utf-8"
    );
    let html = &reply.body;
    assert!(
        html.contains(&format!(
            r#"<p id="error-code"><strong>AADSTS{code}:</strong> "#
        )),
        "{html}"
    );
    let details = between(html, r#"<div class="code">"#, "</div>");
    let lines: Vec<&str> = details.split("<br>").collect();
    assert_eq!(lines.len(), 3, "{details}");
    let request_id = lines[0].strip_prefix("Request Id: ").expect("Request Id");
    let correlation_id = lines[1]
        .strip_prefix("Correlation Id: ")
        .expect("Correlation Id");
    uuid::Uuid::parse_str(request_id).expect("request id is a GUID");
    uuid::Uuid::parse_str(correlation_id).expect("correlation id is a GUID");
    check_timestamp(lines[2].strip_prefix("Timestamp: ").expect("Timestamp"));
    card(html, None).replace(
        details,
        "Request Id: [request_id]<br>Correlation Id: [correlation_id]<br>Timestamp: [timestamp]",
    )
}

/// A token-endpoint error with `suberror` (e.g. 65001's `consent_required`): the envelope is
/// checked by `check_error`, the extra field here.
fn check_error_with_suberror(
    em: &Emulator,
    status: u16,
    headers: &HeaderMap,
    body: &Value,
    expected_status: u16,
    code: u32,
    suberror: &str,
) -> Value {
    let mut plain = body.clone();
    let sub = plain
        .as_object_mut()
        .expect("error object")
        .remove("suberror");
    assert_eq!(sub, Some(json!(suberror)), "{body}");
    let mut v = check_error(em, status, headers, &plain, expected_status, code);
    v["suberror"] = json!(suberror);
    v
}

// -------------------------------------------------------------------------------------------
// Token helpers
// -------------------------------------------------------------------------------------------

fn iss_v1(tenant: &str) -> String {
    format!("https://sts.windows.net/{tenant}/")
}

fn iss_v2(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/v2.0")
}

/// `grant_type=authorization_code` for a confidential client.
fn redeem_form(
    client_id: &str,
    secret: &str,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("client_id", client_id.to_string()),
        ("client_secret", secret.to_string()),
        ("code", code.to_string()),
        ("redirect_uri", redirect_uri.to_string()),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v.to_string()));
    }
    form
}

/// The Teams-phone backend redeems a code at Contoso's v2 endpoint.
fn teams_redeem(code: &str, verifier: Option<&str>) -> Vec<(&'static str, String)> {
    redeem_form(
        TEAMS_PHONE,
        TEAMS_PHONE_SECRET,
        code,
        TEAMS_PHONE_REPLY,
        verifier,
    )
}

/// `grant_type=password` for the Teams client (public: no credential).
fn ropc_form(user: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "password".to_string()),
        ("client_id", TEAMS_CLIENT.to_string()),
        ("username", user.to_string()),
        ("password", password.to_string()),
        ("scope", format!("{GRAPH}/User.Read offline_access openid")),
    ]
}

fn keys_of(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is a string: {v}"))
}

/// The claims every delegated v1 access token carries (reference §3.4).
fn check_user_claims(
    claims: &Value,
    tenant: &str,
    user: &str,
    oid: &str,
    client_id: &str,
    appidacr: &str,
    aud: &str,
) {
    assert_eq!(claims["aud"], aud, "{claims}");
    assert_eq!(claims["iss"], iss_v1(tenant));
    assert_eq!(claims["tid"], tenant);
    assert_eq!(claims["oid"], oid);
    assert_eq!(claims["upn"], user);
    assert_eq!(claims["unique_name"], user);
    assert_eq!(claims["appid"], client_id);
    assert_eq!(claims["appidacr"], appidacr);
    assert_eq!(claims["idtyp"], "user");
    assert_eq!(claims["ver"], "1.0");
    assert!(claims.get("roles").is_none(), "delegated: no roles");
    let sub = str_of(claims, "sub");
    assert_ne!(sub, oid, "sub is pairwise, not the object id");
    let iat = claims["iat"].as_i64().expect("integer iat");
    assert_eq!(claims["nbf"].as_i64(), Some(iat));
    assert_eq!(claims["exp"].as_i64().expect("integer exp") - iat, 3900);
}

fn scp(claims: &Value) -> Vec<&str> {
    str_of(claims, "scp").split(' ').collect()
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

/// The base64url JSON `client_info` (MSAL's home account id).
fn decode_client_info(s: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("base64url client_info"))
        .expect("client_info JSON")
}

fn journal(em: &Emulator, operation: &str) -> Vec<std::sync::Arc<JournalEntry>> {
    em.journal().query(&JournalQuery {
        operation: Some(operation.to_string()),
        ..Default::default()
    })
}

fn summary(e: &JournalEntry) -> Value {
    json!({
        "method": e.method,
        "path": e.path,
        "status": e.status,
        "tenant": e.tenant,
        "client_id": e.client_id,
        "user": e.user,
        "error_code": e.error_code,
    })
}

// -------------------------------------------------------------------------------------------
// 1. Seed 002: Northwind's admin consents to the collector (v1, prompt=admin_consent)
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn seed_002_northwind_admin_consents_to_the_collector_in_the_browser() {
    bounded(async {
        let em = start().await;
        let http = client_no_redirects(&em);
        let jwks = jwks(&http, &em).await;
        let collector = AppCredential::load(&em, COLLECTOR);

        // Before consent Northwind has no service principal for the collector.
        let cc_v2 = secret_form_v2(COLLECTOR, COLLECTOR_SECRET);
        let (status, headers, body) =
            post_form(&http, &token_url_v2(&em, NORTHWIND), &cc_v2).await;
        let v = check_error(&em, status, &headers, &body, 401, 700016);
        assert!(
            str_of(&v, "error_description").contains("directory 'Northwind Traders'"),
            "{v}"
        );
        insta::assert_json_snapshot!("error_700016_northwind_before_consent", v);

        // The admin opens the consent link: v1 authorize on /common with prompt=admin_consent.
        let state = "seed-002";
        let authorize = authorize_url(
            &em,
            "common",
            false,
            &[
                ("response_type", "code"),
                ("resource", MANAGE),
                ("client_id", COLLECTOR),
                ("redirect_uri", COLLECTOR_REPLY),
                ("prompt", "admin_consent"),
                ("state", state),
            ],
        );
        let (sign_in_page, login_form, consent) = sign_in(
            &http,
            &em,
            &authorize,
            NORTHWIND_ADMIN,
            NORTHWIND_ADMIN_PASSWORD,
        )
        .await;
        assert!(sign_in_page.contains("to continue to Contoso Audit Collector"));
        assert_eq!(login_form.action, format!("{}/common/login", em.https_uri()));
        insta::assert_snapshot!("page_sign_in", card(&sign_in_page, Some(&login_form)));

        // The consent page names the app, its publisher and every permission.
        assert_eq!(consent.status, 200, "consent page: {}", consent.body);
        assert_page_headers(&consent.headers);
        let cookie = session_cookie(&consent.headers);
        let html = &consent.body;
        assert!(html.contains(r#"<strong id="app-name">Contoso Audit Collector</strong>"#));
        assert!(html.contains("Published by Contoso</span>"));
        assert!(html.contains("Review for your organization"));
        assert!(html.contains(NORTHWIND_ADMIN));
        for role in COLLECTOR_ROLES {
            assert!(
                html.contains(&format!(
                    "<li><strong>{role}</strong> <span class=\"muted\">(Office 365 Management APIs)</span>"
                )),
                "{role} listed: {html}"
            );
        }
        let consent_form = page_form(&em, html);
        assert_eq!(
            consent_form.action,
            format!("{}/common/consent", em.https_uri())
        );
        assert_eq!(consent_form.flow, login_form.flow, "the same flow continues");
        insta::assert_snapshot!(
            "page_consent_v1_admin_consent",
            card(html, Some(&consent_form))
        );

        // Accept: back to the reply URL with the code and admin_consent=True.
        let accepted = post(
            &http,
            &consent_form.action,
            &[
                ("flow", &consent_form.flow),
                ("csrf", &consent_form.csrf),
                ("decision", "accept"),
            ],
            Some(&cookie),
        )
        .await;
        let params = check_code_redirect(
            &location(&accepted),
            COLLECTOR_REPLY,
            false,
            false,
            &["admin_consent"],
            state,
        );
        assert_eq!(param(&params, "admin_consent"), "True");
        insta::assert_json_snapshot!(
            "redirect_v1_admin_consent",
            redacted_code_params(&params)
        );
        let code = param(&params, "code");

        // The collector redeems the code on /common (v1: string numbers, resource, RT, id token).
        let redeem = [
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", COLLECTOR_REPLY.to_string()),
            ("resource", MANAGE.to_string()),
            ("client_id", COLLECTOR.to_string()),
            ("client_secret", COLLECTOR_SECRET.to_string()),
        ];
        let (status, headers, body) =
            post_form(&http, &token_url_v1(&em, "common"), &redeem).await;
        assert_eq!(status, 200, "{body}");
        assert_token_headers(&headers);
        assert_eq!(
            keys_of(&body),
            [
                "token_type",
                "scope",
                "expires_in",
                "ext_expires_in",
                "expires_on",
                "not_before",
                "resource",
                "access_token",
                "refresh_token",
                "id_token"
            ]
        );
        for n in ["expires_in", "ext_expires_in", "expires_on", "not_before"] {
            str_of(&body, n)
                .parse::<i64>()
                .unwrap_or_else(|_| panic!("{n} is a numeric string: {body}"));
        }
        let expires_on: i64 = str_of(&body, "expires_on").parse().expect("expires_on");
        let not_before: i64 = str_of(&body, "not_before").parse().expect("not_before");
        assert_eq!(expires_on - not_before, 3900);
        insta::assert_json_snapshot!("auth_code_v1_response", body, {
            ".access_token" => "[access_token]",
            ".refresh_token" => "[refresh_token]",
            ".id_token" => "[id_token]",
            ".expires_on" => "[expires_on]",
            ".not_before" => "[not_before]",
        });
        let (_, at) = verify_token(str_of(&body, "access_token"), &jwks, MANAGE, &iss_v1(NORTHWIND))
            .expect("the access token verifies against the JWKS");
        check_user_claims(
            &at,
            NORTHWIND,
            NORTHWIND_ADMIN,
            NORTHWIND_ADMIN_OID,
            COLLECTOR,
            "1",
            MANAGE,
        );
        assert_eq!(at["tid"], NORTHWIND, "the token is for the admin's tenant");
        assert_eq!(scp(&at), ["ActivityFeed.Read", "ServiceHealth.Read"]);
        assert_eq!(at["scp"], body["scope"]);
        let (_, id) = verify_token(str_of(&body, "id_token"), &jwks, COLLECTOR, &iss_v1(NORTHWIND))
            .expect("the id token verifies against the JWKS");
        assert_eq!(id["upn"], NORTHWIND_ADMIN);
        assert_eq!(id["oid"], NORTHWIND_ADMIN_OID);
        assert_eq!(id["tid"], NORTHWIND);
        assert_eq!(id["ver"], "1.0");
        assert_eq!(id["sub"], at["sub"], "pairwise sub: same user, same app");
        let delegated_uti = str_of(&at, "uti").to_string();

        // Now app-only tokens work in Northwind, with the certificate, carrying every app role
        // the registration requires.
        let url = token_url_v1(&em, NORTHWIND);
        let assertion =
            collector.msal_python_assertion(COLLECTOR, &url, em.clock().now().unix_timestamp());
        let form = [
            ("grant_type", "client_credentials".to_string()),
            ("client_id", COLLECTOR.to_string()),
            ("client_assertion_type", JWT_BEARER.to_string()),
            ("client_assertion", assertion),
            ("resource", MANAGE.to_string()),
        ];
        let (status, _, body) = post_form(&http, &url, &form).await;
        assert_eq!(status, 200, "{body}");
        let (_, app) = verify_token(str_of(&body, "access_token"), &jwks, MANAGE, &iss_v1(NORTHWIND))
            .expect("the app-only token verifies");
        assert_eq!(app["roles"], json!(COLLECTOR_ROLES), "{app}");
        assert_eq!(app["tid"], NORTHWIND);
        assert_eq!(app["appid"], COLLECTOR);
        assert_eq!(app["appidacr"], "2", "certificate");
        assert_eq!(app["idtyp"], "app");
        assert!(app.get("scp").is_none());
        let app_uti = str_of(&app, "uti").to_string();
        // … and the very request that failed before consent succeeds.
        let (status, _, body) = post_form(&http, &token_url_v2(&em, NORTHWIND), &cc_v2).await;
        assert_eq!(status, 200, "{body}");

        // Journal: every step with tenant, client and (for the user's token) the user.
        let token_entries: Vec<Value> = journal(&em, "entra.token")
            .iter()
            .map(|e| summary(e))
            .collect();
        let nw = json!(NORTHWIND);
        let app_id = json!(COLLECTOR);
        assert_eq!(
            token_entries,
            [
                json!({"method": "POST", "path": format!("/{NORTHWIND}/oauth2/v2.0/token"), "status": 401,
                       "tenant": nw, "client_id": app_id, "user": null, "error_code": "AADSTS700016"}),
                json!({"method": "POST", "path": "/common/oauth2/token", "status": 200,
                       "tenant": nw, "client_id": app_id, "user": NORTHWIND_ADMIN_OID, "error_code": null}),
                json!({"method": "POST", "path": format!("/{NORTHWIND}/oauth2/token"), "status": 200,
                       "tenant": nw, "client_id": app_id, "user": null, "error_code": null}),
                json!({"method": "POST", "path": format!("/{NORTHWIND}/oauth2/v2.0/token"), "status": 200,
                       "tenant": nw, "client_id": app_id, "user": null, "error_code": null}),
            ]
        );
        let tokens = journal(&em, "entra.token");
        assert_eq!(tokens[1].token_id.as_deref(), Some(delegated_uti.as_str()));
        assert_eq!(tokens[2].token_id.as_deref(), Some(app_uti.as_str()));
        assert!(tokens[2].assertion.is_some(), "the assertion is described");
        // The pages (sign-in, consent) and the final redirect; the redirect names who consented
        // to what. (The pages' entries should name the client too: see
        // `known_gaps_in_user_grants_tenant_checks_and_journal`.)
        let pages = journal(&em, "entra.authorize");
        let steps: Vec<(&str, &str, u16)> = pages
            .iter()
            .map(|e| (e.method.as_str(), e.path.as_str(), e.status))
            .collect();
        assert_eq!(
            steps,
            [
                ("GET", "/common/oauth2/authorize", 200),
                ("POST", "/common/login", 200),
                ("POST", "/common/consent", 302),
            ]
        );
        assert_eq!(
            summary(&pages[2]),
            json!({"method": "POST", "path": "/common/consent", "status": 302,
                   "tenant": nw, "client_id": app_id, "user": NORTHWIND_ADMIN_OID, "error_code": null})
        );
        // Neither the password, the code, the secret nor the session id reach the journal.
        let entries = em.journal().query(&JournalQuery::default());
        let entries: Vec<&JournalEntry> = entries.iter().map(|e| e.as_ref()).collect();
        let everything = serde_json::to_string(&entries).expect("journal JSON");
        let session_id = cookie.split_once('=').expect("cookie").1;
        for secret in [NORTHWIND_ADMIN_PASSWORD, code, COLLECTOR_SECRET, session_id] {
            assert!(!everything.contains(secret), "{secret} leaked into the journal");
        }
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// 2. v2 authorization code + PKCE, session, response modes, refresh, password grant
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn v2_code_with_pkce_session_response_modes_refresh_and_password_grant() {
    bounded(async {
        let em = start().await;
        let http = client_no_redirects(&em);
        let jwks = jwks(&http, &em).await;
        let token_url = token_url_v2(&em, CONTOSO);

        // S256: Adele signs in; the backend is consented tenant-wide, so no consent page.
        let nonce = "nonce-3f1c9a";
        let authorize = teams_authorize(
            &em,
            &[
                ("state", "s256"),
                ("nonce", nonce),
                ("client_info", "1"),
                ("login_hint", ADELE),
                ("code_challenge", RFC7636_CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
        );
        let (page, form, reply) = sign_in(&http, &em, &authorize, ADELE, ADELE_PASSWORD).await;
        assert!(page.contains("to continue to Contoso Teams Phone Backend"));
        assert!(
            page.contains(&format!(
                r#"name="username" autocomplete="username" value="{ADELE}""#
            )),
            "login_hint prefills the username"
        );
        assert_eq!(form.action, format!("{}/{CONTOSO}/login", em.https_uri()));
        let cookie = session_cookie(&reply.headers);
        let params = check_code_redirect(
            &location(&reply),
            TEAMS_PHONE_REPLY,
            false,
            true,
            &[],
            "s256",
        );
        assert_eq!(
            decode_client_info(param(&params, "client_info")),
            json!({"uid": ADELE_OID, "utid": CONTOSO})
        );
        let mut redeem = teams_redeem(param(&params, "code"), Some(RFC7636_VERIFIER));
        redeem.push(("client_info", "1".to_string()));
        let (status, headers, body) = post_form(&http, &token_url, &redeem).await;
        assert_eq!(status, 200, "{body}");
        assert_token_headers(&headers);
        assert_eq!(
            keys_of(&body),
            [
                "token_type",
                "scope",
                "expires_in",
                "ext_expires_in",
                "access_token",
                "refresh_token",
                "id_token",
                "client_info"
            ]
        );
        assert!(
            body["expires_in"].is_i64() && body["ext_expires_in"].is_i64(),
            "{body}"
        );
        assert_eq!(
            decode_client_info(str_of(&body, "client_info")),
            json!({"uid": ADELE_OID, "utid": CONTOSO})
        );
        insta::assert_json_snapshot!("auth_code_v2_response", body, {
            ".access_token" => "[access_token]",
            ".refresh_token" => "[refresh_token]",
            ".id_token" => "[id_token]",
        });
        let access = str_of(&body, "access_token");
        let (at_header, at) = verify_token(access, &jwks, GRAPH, &iss_v1(CONTOSO))
            .expect("the access token verifies against the JWKS");
        assert_eq!(raw_header(access)["x5t"], json!(at_header.kid), "v1 header");
        check_user_claims(&at, CONTOSO, ADELE, ADELE_OID, TEAMS_PHONE, "1", GRAPH);
        assert!(scp(&at).contains(&"User.Read"), "{at}");
        claim_redactions().bind(|| {
            insta::assert_json_snapshot!("access_token_claims_graph_delegated", at);
        });
        let (id_header, id) = verify_token(
            str_of(&body, "id_token"),
            &jwks,
            TEAMS_PHONE,
            &iss_v2(CONTOSO),
        )
        .expect("the id token verifies against the JWKS");
        assert!(raw_header(str_of(&body, "id_token")).get("x5t").is_none());
        assert_eq!(id_header.kid, at_header.kid);
        assert_eq!(id["nonce"], nonce, "the nonce is echoed");
        assert_eq!(id["aud"], TEAMS_PHONE);
        assert_eq!(id["ver"], "2.0");
        assert_eq!(id["preferred_username"], ADELE);
        assert_eq!(id["oid"], ADELE_OID);
        assert_eq!(id["tid"], CONTOSO);
        assert_eq!(id["sub"], at["sub"]);
        assert!(id.get("upn").is_none(), "v2 id tokens have no upn");
        claim_redactions().bind(|| {
            insta::assert_json_snapshot!("id_token_claims_v2", id);
        });
        let refresh_token = str_of(&body, "refresh_token").to_string();
        let phone_sub = str_of(&at, "sub").to_string();

        // Plain PKCE, signed in by the session cookie: straight back with a code, no page and
        // no new session.
        let plain = "plain-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
        let reply = get(
            &http,
            &teams_authorize(
                &em,
                &[
                    ("state", "plain"),
                    ("code_challenge", plain),
                    ("code_challenge_method", "plain"),
                ],
            ),
            Some(&cookie),
        )
        .await;
        assert!(reply.headers.get("set-cookie").is_none());
        let params = check_code_redirect(
            &location(&reply),
            TEAMS_PHONE_REPLY,
            false,
            false,
            &[],
            "plain",
        );
        let (status, _, body) = post_form(
            &http,
            &token_url,
            &teams_redeem(param(&params, "code"), Some(plain)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (_, at) = verify_token(
            str_of(&body, "access_token"),
            &jwks,
            GRAPH,
            &iss_v1(CONTOSO),
        )
        .expect("verifies");
        assert_eq!(at["upn"], ADELE, "the session's user");
        assert!(body.get("client_info").is_none(), "not asked for");

        // prompt=none with the session: silent success. prompt=login: the sign-in page again.
        let reply = get(
            &http,
            &teams_authorize(&em, &[("prompt", "none"), ("state", "silent")]),
            Some(&cookie),
        )
        .await;
        check_code_redirect(
            &location(&reply),
            TEAMS_PHONE_REPLY,
            false,
            false,
            &[],
            "silent",
        );
        let reply = get(
            &http,
            &teams_authorize(&em, &[("prompt", "login")]),
            Some(&cookie),
        )
        .await;
        assert_eq!(reply.status, 200);
        assert!(
            reply.body.contains("<h1>Sign in</h1>"),
            "prompt=login ignores the session"
        );

        // response_mode=fragment: the parameters after '#'.
        let reply = get(
            &http,
            &teams_authorize(&em, &[("response_mode", "fragment"), ("state", "frag")]),
            Some(&cookie),
        )
        .await;
        let loc = location(&reply);
        assert!(
            loc.starts_with(&format!("{TEAMS_PHONE_REPLY}#code=")),
            "{loc}"
        );
        assert!(!loc.contains('?'), "{loc}");
        let params = check_code_redirect(&loc, TEAMS_PHONE_REPLY, true, false, &[], "frag");
        let (status, _, body) = post_form(
            &http,
            &token_url,
            &teams_redeem(param(&params, "code"), None),
        )
        .await;
        assert_eq!(status, 200, "a fragment code redeems: {body}");

        // response_mode=form_post: an auto-submitting page; every value escaped.
        let tricky = "a\"b<c>&d'e";
        let reply = get(
            &http,
            &teams_authorize(
                &em,
                &[
                    ("response_mode", "form_post"),
                    ("state", tricky),
                    ("client_info", "1"),
                ],
            ),
            Some(&cookie),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.headers.get("location").is_none());
        assert_eq!(
            header(&reply.headers, "content-type"),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            header(&reply.headers, "cache-control"),
            "no-store, no-cache"
        );
        let html = &reply.body;
        assert_eq!(
            value_after(html, r#"<form method="POST" name="hiddenform" action=""#).as_deref(),
            Some(TEAMS_PHONE_REPLY)
        );
        assert!(
            !html.contains(tricky),
            "the raw state never reaches the page"
        );
        assert!(
            html.contains(r#"value="a&quot;b&lt;c&gt;&amp;d&#39;e""#),
            "{html}"
        );
        let inputs = hidden_inputs(html);
        assert_eq!(
            names(&inputs),
            ["code", "client_info", "session_state", "state"]
        );
        assert_eq!(param(&inputs, "state"), tricky);
        let code = param(&inputs, "code").to_string();
        let session_state = param(&inputs, "session_state").to_string();
        insta::assert_snapshot!(
            "page_form_post",
            html.replace(&code, "[code]")
                .replace(&session_state, "[session_state]")
        );
        let (status, _, body) = post_form(&http, &token_url, &teams_redeem(&code, None)).await;
        assert_eq!(status, 200, "a form_post code redeems: {body}");

        // Refresh: a new refresh token each time; the old one stays valid, and is good for
        // another resource the user consented to (RTs are multi-resource).
        let refresh = |rt: &str, scope: &str| {
            vec![
                ("grant_type", "refresh_token".to_string()),
                ("client_id", TEAMS_PHONE.to_string()),
                ("client_secret", TEAMS_PHONE_SECRET.to_string()),
                ("refresh_token", rt.to_string()),
                ("scope", scope.to_string()),
            ]
        };
        let (status, _, body) = post_form(
            &http,
            &token_url,
            &refresh(
                &refresh_token,
                &format!("{GRAPH}/User.Read openid offline_access"),
            ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let new_rt = str_of(&body, "refresh_token");
        assert_ne!(new_rt, refresh_token, "a new refresh token");
        let (_, at) = verify_token(
            str_of(&body, "access_token"),
            &jwks,
            GRAPH,
            &iss_v1(CONTOSO),
        )
        .expect("verifies");
        check_user_claims(&at, CONTOSO, ADELE, ADELE_OID, TEAMS_PHONE, "1", GRAPH);
        assert_eq!(scp(&at), ["User.Read"]);
        let (status, _, body) = post_form(
            &http,
            &token_url,
            &refresh(&refresh_token, &format!("{ACS}/Teams.ManageCalls")),
        )
        .await;
        assert_eq!(status, 200, "the old refresh token is still valid: {body}");
        let (_, at) = verify_token(str_of(&body, "access_token"), &jwks, ACS, &iss_v1(CONTOSO))
            .expect("verifies");
        assert_eq!(scp(&at), ["Teams.ManageCalls"]);
        assert_eq!(at["upn"], ADELE);

        // Password grant (ROPC) with the public Teams client: no credential, appidacr "0".
        let (status, headers, body) =
            post_form(&http, &token_url, &ropc_form(ADELE, ADELE_PASSWORD)).await;
        assert_eq!(status, 200, "{body}");
        assert_token_headers(&headers);
        assert!(
            body["refresh_token"].is_string() && body["id_token"].is_string(),
            "{body}"
        );
        let (_, at) = verify_token(
            str_of(&body, "access_token"),
            &jwks,
            GRAPH,
            &iss_v1(CONTOSO),
        )
        .expect("verifies");
        check_user_claims(&at, CONTOSO, ADELE, ADELE_OID, TEAMS_CLIENT, "0", GRAPH);
        assert_eq!(scp(&at), ["User.Read"]);
        let (_, id) = verify_token(
            str_of(&body, "id_token"),
            &jwks,
            TEAMS_CLIENT,
            &iss_v2(CONTOSO),
        )
        .expect("the id token verifies");
        assert_eq!(id["preferred_username"], ADELE);
        assert_eq!(id["sub"], at["sub"]);
        assert_ne!(
            at["sub"],
            json!(phone_sub),
            "sub is pairwise: another app, another sub"
        );
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// 3. Errors
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn user_flow_errors_pages_redirects_and_token_endpoint() {
    bounded(async {
        let em = start().await;
        em.clock().freeze();
        em.clock().set(FROZEN);
        let http = client_no_redirects(&em);
        let contoso_token = token_url_v2(&em, CONTOSO);

        // --- Before the redirect URI is trusted: an error page, never a redirect.
        let reply = get(
            &http,
            &teams_authorize(&em, &[("redirect_uri", "https://evil.example/callback")]),
            None,
        )
        .await;
        let page = check_error_page(&reply, 50011);
        assert!(page.contains("https://evil.example/callback"));
        insta::assert_snapshot!("page_50011_unregistered_redirect_uri", page);
        let reply = get(
            &http,
            &teams_authorize(
                &em,
                &[("client_id", "11111111-2222-3333-4444-555555555555")],
            ),
            None,
        )
        .await;
        insta::assert_snapshot!(
            "page_700016_unknown_client",
            check_error_page(&reply, 700016)
        );

        // --- Adele signs in once; the session cookie gets the codes below.
        let (_, _, reply) = sign_in(
            &http,
            &em,
            &teams_authorize(&em, &[]),
            ADELE,
            ADELE_PASSWORD,
        )
        .await;
        let cookie = session_cookie(&reply.headers);
        check_code_redirect(
            &location(&reply),
            TEAMS_PHONE_REPLY,
            false,
            false,
            &[],
            "teams-state",
        );
        let new_code = |challenge: Option<&'static str>| {
            let http = http.clone();
            let cookie = cookie.clone();
            let url = match challenge {
                Some(c) => teams_authorize(
                    &em,
                    &[("code_challenge", c), ("code_challenge_method", "S256")],
                ),
                None => teams_authorize(&em, &[]),
            };
            async move {
                let reply = get(&http, &url, Some(&cookie)).await;
                let loc = location(&reply);
                param(&redirect_params(&loc, TEAMS_PHONE_REPLY, false), "code").to_string()
            }
        };

        // Code reuse: 54005.
        let code = new_code(None).await;
        let (status, _, body) = post_form(&http, &contoso_token, &teams_redeem(&code, None)).await;
        assert_eq!(status, 200, "{body}");
        let (status, headers, body) =
            post_form(&http, &contoso_token, &teams_redeem(&code, None)).await;
        let v = check_error(&em, status, &headers, &body, 400, 54005);
        assert_eq!(v["error"], "invalid_grant");
        insta::assert_json_snapshot!("error_54005_code_reused", v);

        // Wrong redirect_uri at redemption: 50011 invalid_client (another registered URI).
        let code = new_code(None).await;
        let form = redeem_form(
            TEAMS_PHONE,
            TEAMS_PHONE_SECRET,
            &code,
            "http://localhost",
            None,
        );
        let (status, headers, body) = post_form(&http, &contoso_token, &form).await;
        let v = check_error(&em, status, &headers, &body, 401, 50011);
        assert_eq!(v["error"], "invalid_client");
        assert!(str_of(&v, "error_description").contains(TEAMS_PHONE_REPLY));
        insta::assert_json_snapshot!("error_50011_redirect_uri_mismatch_at_redeem", v);

        // PKCE: a wrong verifier, and none at all, are 501481.
        let code = new_code(Some(RFC7636_CHALLENGE)).await;
        let wrong = "wrong-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
        let (status, headers, body) =
            post_form(&http, &contoso_token, &teams_redeem(&code, Some(wrong))).await;
        let v = check_error(&em, status, &headers, &body, 400, 501481);
        insta::assert_json_snapshot!("error_501481_wrong_code_verifier", v);
        let (status, headers, body) =
            post_form(&http, &contoso_token, &teams_redeem(&code, None)).await;
        check_error(&em, status, &headers, &body, 400, 501481);

        // A Contoso code redeemed at Fabrikam's endpoint: 700005.
        let code = new_code(None).await;
        let (status, headers, body) = post_form(
            &http,
            &token_url_v2(&em, FABRIKAM),
            &teams_redeem(&code, None),
        )
        .await;
        let v = check_error(&em, status, &headers, &body, 400, 700005);
        insta::assert_json_snapshot!("error_700005_code_for_another_tenant", v);

        // A code issued to one client, presented by another: not a valid code for it.
        let code = new_code(None).await;
        let form = redeem_form(COLLECTOR, COLLECTOR_SECRET, &code, TEAMS_PHONE_REPLY, None);
        let (status, headers, body) = post_form(&http, &contoso_token, &form).await;
        let v = check_error(&em, status, &headers, &body, 400, 70000);
        insta::assert_json_snapshot!("error_70000_code_of_another_client", v);

        // --- Cancel on the consent page: access_denied, AADSTS65004.
        let nestor_authorize = authorize_url(
            &em,
            NORTHWIND,
            true,
            &[
                ("client_id", COLLECTOR),
                ("response_type", "code"),
                ("redirect_uri", COLLECTOR_REPLY),
                ("scope", "https://manage.office.com/ActivityFeed.Read"),
                ("state", "nestor"),
            ],
        );
        let (_, _, consent) = sign_in(&http, &em, &nestor_authorize, NESTOR, NESTOR_PASSWORD).await;
        assert_eq!(consent.status, 200, "consent page: {}", consent.body);
        assert_page_headers(&consent.headers);
        let nestor_cookie = session_cookie(&consent.headers);
        let form = page_form(&em, &consent.body);
        assert!(!consent.body.contains("Review for your organization"));
        assert!(
            !consent.body.contains("consent_for_org"),
            "no organization checkbox for a non-admin"
        );
        insta::assert_snapshot!("page_consent_v2_user", card(&consent.body, Some(&form)));
        let cancelled = post(
            &http,
            &form.action,
            &[
                ("flow", &form.flow),
                ("csrf", &form.csrf),
                ("decision", "cancel"),
            ],
            Some(&nestor_cookie),
        )
        .await;
        let v = check_redirect_error(
            &em,
            &cancelled,
            COLLECTOR_REPLY,
            "access_denied",
            65004,
            "nestor",
        );
        insta::assert_json_snapshot!("redirect_65004_consent_cancelled", v);
        // Nothing was consented: the same request shows the consent page again…
        let again = get(&http, &nestor_authorize, Some(&nestor_cookie)).await;
        assert_eq!(again.status, 200);
        assert!(again.body.contains(r#"id="permissions""#), "{}", again.body);
        // … and a silent request says so.
        let silent = authorize_url(
            &em,
            NORTHWIND,
            true,
            &[
                ("client_id", COLLECTOR),
                ("response_type", "code"),
                ("redirect_uri", COLLECTOR_REPLY),
                ("scope", "https://manage.office.com/ActivityFeed.Read"),
                ("prompt", "none"),
                ("state", "nestor-silent"),
            ],
        );
        let reply = get(&http, &silent, Some(&nestor_cookie)).await;
        let v = check_redirect_error(
            &em,
            &reply,
            COLLECTOR_REPLY,
            "consent_required",
            65001,
            "nestor-silent",
        );
        insta::assert_json_snapshot!("redirect_65001_prompt_none_without_consent", v);

        // prompt=none without a session: login_required, AADSTS50058.
        let reply = get(
            &http,
            &teams_authorize(&em, &[("prompt", "none"), ("state", "silent")]),
            None,
        )
        .await;
        let v = check_redirect_error(
            &em,
            &reply,
            TEAMS_PHONE_REPLY,
            "login_required",
            50058,
            "silent",
        );
        insta::assert_json_snapshot!("redirect_50058_prompt_none_without_session", v);

        // A non-admin asking for admin consent: access_denied, AADSTS90094.
        let admin_consent = authorize_url(
            &em,
            "common",
            false,
            &[
                ("response_type", "code"),
                ("resource", MANAGE),
                ("client_id", COLLECTOR),
                ("redirect_uri", COLLECTOR_REPLY),
                ("prompt", "admin_consent"),
                ("state", "not-an-admin"),
            ],
        );
        let (_, _, reply) = sign_in(&http, &em, &admin_consent, NESTOR, NESTOR_PASSWORD).await;
        let v = check_redirect_error(
            &em,
            &reply,
            COLLECTOR_REPLY,
            "access_denied",
            90094,
            "not-an-admin",
        );
        insta::assert_json_snapshot!("redirect_90094_admin_consent_by_non_admin", v);

        // --- Password grant errors.
        let (status, headers, body) =
            post_form(&http, &contoso_token, &ropc_form(ADELE, "not-the-password")).await;
        let v = check_error(&em, status, &headers, &body, 400, 50126);
        assert_eq!(v["error"], "invalid_grant");
        insta::assert_json_snapshot!("error_50126_wrong_password", v);
        let (status, headers, body) = post_form(
            &http,
            &contoso_token,
            &ropc_form("nobody@contoso.onmicrosoft.com", "whatever"),
        )
        .await;
        let v = check_error(&em, status, &headers, &body, 400, 50034);
        insta::assert_json_snapshot!("error_50034_unknown_user", v);
        // The multi-tenant collector exists, but nobody in Northwind consented to it.
        let form = [
            ("grant_type", "password".to_string()),
            ("client_id", COLLECTOR.to_string()),
            ("client_secret", COLLECTOR_SECRET.to_string()),
            ("username", NESTOR.to_string()),
            ("password", NESTOR_PASSWORD.to_string()),
            ("scope", format!("{MANAGE}/ActivityFeed.Read")),
        ];
        let (status, headers, body) = post_form(&http, &token_url_v2(&em, NORTHWIND), &form).await;
        let v =
            check_error_with_suberror(&em, status, &headers, &body, 400, 65001, "consent_required");
        insta::assert_json_snapshot!("error_65001_password_grant_without_consent", v);
        // A public client must not present a secret.
        let mut form = ropc_form(ADELE, ADELE_PASSWORD);
        form.push(("client_secret", "a-secret".to_string()));
        let (status, headers, body) = post_form(&http, &contoso_token, &form).await;
        let v = check_error(&em, status, &headers, &body, 401, 700025);
        insta::assert_json_snapshot!("error_700025_public_client_with_secret", v);

        // --- Page posts without a valid flow and CSRF token: a 400 page, and nothing changes.
        let page = get(&http, &teams_authorize(&em, &[("state", "csrf")]), None).await;
        assert_eq!(page.status, 200);
        let form = page_form(&em, &page.body);
        let login = format!("{}/{CONTOSO}/login", em.https_uri());
        let attempts: [Vec<(&str, &str)>; 4] = [
            vec![("username", ADELE), ("password", ADELE_PASSWORD)],
            vec![
                ("flow", &form.flow),
                ("username", ADELE),
                ("password", ADELE_PASSWORD),
            ],
            vec![
                ("flow", &form.flow),
                ("csrf", "forged-csrf-token-0123456789"),
                ("username", ADELE),
                ("password", ADELE_PASSWORD),
            ],
            vec![
                ("flow", "unknown-flow-0123456789abcdefghijklmnop"),
                ("csrf", &form.csrf),
                ("username", ADELE),
                ("password", ADELE_PASSWORD),
            ],
        ];
        for (i, attempt) in attempts.iter().enumerate() {
            let reply = post(&http, &login, attempt, None).await;
            let page = check_error_page(&reply, 9002313);
            if i == 2 {
                insta::assert_snapshot!("page_9002313_login_with_forged_csrf", page);
            }
        }
        let reply = post(
            &http,
            &format!("{}/{CONTOSO}/consent", em.https_uri()),
            &[
                ("flow", &form.flow),
                ("csrf", "forged"),
                ("decision", "accept"),
            ],
            Some(&cookie),
        )
        .await;
        check_error_page(&reply, 9002313);
        // The genuine form still works, once.
        let genuine = [
            ("flow", form.flow.as_str()),
            ("csrf", form.csrf.as_str()),
            ("username", ADELE),
            ("password", ADELE_PASSWORD),
        ];
        let reply = post(&http, &form.action, &genuine, None).await;
        check_code_redirect(
            &location(&reply),
            TEAMS_PHONE_REPLY,
            false,
            false,
            &[],
            "csrf",
        );
        let replay = post(&http, &form.action, &genuine, None).await;
        check_error_page(&replay, 9002313);

        // --- Markup in state, login_hint, username and redirect_uri only ever appears escaped.
        let reply = get(
            &http,
            &teams_authorize(
                &em,
                &[
                    ("state", XSS_STATE),
                    ("login_hint", XSS_HINT),
                    ("response_mode", "form_post"),
                ],
            ),
            None,
        )
        .await;
        assert_eq!(reply.status, 200);
        assert!(!reply.body.contains(XSS_HINT) && !reply.body.contains("<img"));
        assert!(!reply.body.contains("<script"));
        assert!(
            reply
                .body
                .contains(r#"value="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;""#),
            "{}",
            reply.body
        );
        let form = page_form(&em, &reply.body);
        let retry = post(
            &http,
            &form.action,
            &[
                ("flow", &form.flow),
                ("csrf", &form.csrf),
                ("username", XSS_STATE),
                ("password", "x"),
            ],
            None,
        )
        .await;
        assert_eq!(retry.status, 200, "the sign-in page again, with the error");
        assert!(retry.body.contains("AADSTS50034"), "{}", retry.body);
        assert!(!retry.body.contains("<script"), "{}", retry.body);
        assert!(retry
            .body
            .contains("value=\"&lt;script&gt;alert(1)&lt;/script&gt;\""));
        let posted = post(
            &http,
            &form.action,
            &[
                ("flow", &form.flow),
                ("csrf", &form.csrf),
                ("username", ADELE),
                ("password", ADELE_PASSWORD),
            ],
            None,
        )
        .await;
        assert_eq!(posted.status, 200, "form_post page: {}", posted.body);
        assert!(!posted.body.contains(XSS_STATE) && !posted.body.contains("<script"));
        assert!(posted
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_eq!(
            hidden_input(&posted.body, "state").as_deref(),
            Some(XSS_STATE)
        );
        let reply = get(
            &http,
            &teams_authorize(
                &em,
                &[(
                    "redirect_uri",
                    "https://evil.example/\"><script>alert(1)</script>",
                )],
            ),
            None,
        )
        .await;
        let page = check_error_page(&reply, 50011);
        assert!(!reply.body.contains("<script"), "{page}");
        assert!(
            page.contains("https://evil.example/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;")
        );

        // --- Time: an 11-minute-old code (70008), a refresh token idle for 91 days (700082).
        let code = new_code(None).await;
        let (status, _, body) =
            post_form(&http, &contoso_token, &ropc_form(ADELE, ADELE_PASSWORD)).await;
        assert_eq!(status, 200, "{body}");
        let refresh_token = str_of(&body, "refresh_token").to_string();
        em.clock().advance(time::Duration::minutes(11));
        let (status, headers, body) =
            post_form(&http, &contoso_token, &teams_redeem(&code, None)).await;
        let v = check_error(&em, status, &headers, &body, 400, 70008);
        insta::assert_json_snapshot!("error_70008_code_expired", v);
        em.clock().advance(time::Duration::days(91));
        let refresh = [
            ("grant_type", "refresh_token".to_string()),
            ("client_id", TEAMS_CLIENT.to_string()),
            ("refresh_token", refresh_token),
            ("scope", format!("{GRAPH}/User.Read")),
        ];
        let (status, headers, body) = post_form(&http, &contoso_token, &refresh).await;
        let v = check_error(&em, status, &headers, &body, 400, 700082);
        assert!(
            str_of(&v, "error_description").contains("issued on 2030-01-02 03:04:05Z"),
            "{v}"
        );
        insta::assert_json_snapshot!("error_700082_refresh_token_idle_91_days", v);
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// 4. Headless: auto sign-in
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn headless_auto_sign_in_redirects_at_once_with_login_hint() {
    bounded(async {
        let em = start_with(Emulator::builder().key_seed(42).auto_sign_in(true)).await;
        let http = client_no_redirects(&em);
        let jwks = jwks(&http, &em).await;

        // login_hint names the user: a code at once, no page.
        let reply = get(
            &http,
            &teams_authorize(
                &em,
                &[
                    ("login_hint", ADELE),
                    ("code_challenge", RFC7636_CHALLENGE),
                    ("code_challenge_method", "S256"),
                ],
            ),
            None,
        )
        .await;
        let params = check_code_redirect(
            &location(&reply),
            TEAMS_PHONE_REPLY,
            false,
            false,
            &[],
            "teams-state",
        );
        let (status, _, body) = post_form(
            &http,
            &token_url_v2(&em, CONTOSO),
            &teams_redeem(param(&params, "code"), Some(RFC7636_VERIFIER)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (_, at) = verify_token(str_of(&body, "access_token"), &jwks, GRAPH, &iss_v1(CONTOSO))
            .expect("verifies");
        check_user_claims(&at, CONTOSO, ADELE, ADELE_OID, TEAMS_PHONE, "1", GRAPH);

        // Without a hint there is nobody to sign in: the page as usual.
        let reply = get(&http, &teams_authorize(&em, &[]), None).await;
        assert_eq!(reply.status, 200);
        assert!(reply.body.contains("<h1>Sign in</h1>"));

        // Auto sign-in also consents, as Accept would: Nestor gets a collector code at once.
        let authorize = authorize_url(
            &em,
            NORTHWIND,
            true,
            &[
                ("client_id", COLLECTOR),
                ("response_type", "code"),
                ("redirect_uri", COLLECTOR_REPLY),
                ("scope", "https://manage.office.com/ActivityFeed.Read"),
                ("login_hint", NESTOR),
                ("state", "headless"),
            ],
        );
        let reply = get(&http, &authorize, None).await;
        let params =
            check_code_redirect(&location(&reply), COLLECTOR_REPLY, false, false, &[], "headless");
        let (status, _, body) = post_form(
            &http,
            &token_url_v2(&em, NORTHWIND),
            &redeem_form(
                COLLECTOR,
                COLLECTOR_SECRET,
                param(&params, "code"),
                COLLECTOR_REPLY,
                None,
            ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (_, at) = verify_token(str_of(&body, "access_token"), &jwks, MANAGE, &iss_v1(NORTHWIND))
            .expect("verifies");
        check_user_claims(&at, NORTHWIND, NESTOR, NESTOR_OID, COLLECTOR, "1", MANAGE);
        assert_eq!(scp(&at), ["ActivityFeed.Read"]);

        // The journal names tenant, client and user of each issued code and token.
        let authorize_entries: Vec<Value> = journal(&em, "entra.authorize")
            .iter()
            .filter(|e| e.status == 302)
            .map(|e| summary(e))
            .collect();
        assert_eq!(
            authorize_entries,
            [
                json!({"method": "GET", "path": format!("/{CONTOSO}/oauth2/v2.0/authorize"), "status": 302,
                       "tenant": CONTOSO, "client_id": TEAMS_PHONE, "user": ADELE_OID, "error_code": null}),
                json!({"method": "GET", "path": format!("/{NORTHWIND}/oauth2/v2.0/authorize"), "status": 302,
                       "tenant": NORTHWIND, "client_id": COLLECTOR, "user": NESTOR_OID, "error_code": null}),
            ]
        );
        let token_entries: Vec<Value> = journal(&em, "entra.token")
            .iter()
            .map(|e| summary(e))
            .collect();
        assert_eq!(
            token_entries,
            [
                json!({"method": "POST", "path": format!("/{CONTOSO}/oauth2/v2.0/token"), "status": 200,
                       "tenant": CONTOSO, "client_id": TEAMS_PHONE, "user": ADELE_OID, "error_code": null}),
                json!({"method": "POST", "path": format!("/{NORTHWIND}/oauth2/v2.0/token"), "status": 200,
                       "tenant": NORTHWIND, "client_id": COLLECTOR, "user": NESTOR_OID, "error_code": null}),
            ]
        );
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// Regressions: bugs found in review (tenant checks, v1 consent, journal context)
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn regression_user_grants_tenant_checks_v1_consent_and_journal_context() {
    bounded(async {
        let em = start().await;
        let http = client_no_redirects(&em);

        // Contoso's single-tenant public client does not exist in Northwind (reference §4:
        // "single-tenant app used elsewhere" is 700016, as client credentials and the
        // authorize endpoint already answer).
        let (status, headers, body) = post_form(
            &http,
            &token_url_v2(&em, NORTHWIND),
            &ropc_form(NESTOR, NESTOR_PASSWORD),
        )
        .await;
        let v = check_error(&em, status, &headers, &body, 401, 700016);
        assert!(
            str_of(&v, "error_description").contains(&format!(
                "'{TEAMS_CLIENT}' was not found in the directory 'Northwind Traders'"
            )),
            "{v}"
        );

        // The pages' journal entries name the client (from the query or the flow) and, once
        // signed in, the tenant and the user.
        let authorize = teams_authorize(&em, &[]);
        let (_, _, reply) = sign_in(&http, &em, &authorize, ADELE, ADELE_PASSWORD).await;
        location(&reply);
        let pages = journal(&em, "entra.authorize");
        assert_eq!(pages.len(), 2);
        assert_eq!(
            summary(&pages[0]),
            json!({"method": "GET", "path": format!("/{CONTOSO}/oauth2/v2.0/authorize"), "status": 200,
                   "tenant": CONTOSO, "client_id": TEAMS_PHONE, "user": null, "error_code": null})
        );
        assert_eq!(
            summary(&pages[1]),
            json!({"method": "POST", "path": format!("/{CONTOSO}/login"), "status": 302,
                   "tenant": CONTOSO, "client_id": TEAMS_PHONE, "user": ADELE_OID, "error_code": null})
        );

        // A flow started on Contoso's authorize URL stays Contoso's: posting its login form to
        // /common/login must not let a Northwind user in (posting it to /{CONTOSO}/login
        // gives AADSTS50020). Today the login handler checks the tenant of the POST path, not
        // the flow's, and shows Nestor the consent page for a Northwind code.
        let authorize = authorize_url(
            &em,
            CONTOSO,
            true,
            &[
                ("client_id", COLLECTOR),
                ("response_type", "code"),
                ("redirect_uri", COLLECTOR_REPLY),
                ("scope", "https://manage.office.com/ActivityFeed.Read"),
                ("state", "contoso-only"),
            ],
        );
        let page = get(&http, &authorize, None).await;
        let form = page_form(&em, &page.body);
        let reply = post(
            &http,
            &format!("{}/common/login", em.https_uri()),
            &[
                ("flow", &form.flow),
                ("csrf", &form.csrf),
                ("username", NESTOR),
                ("password", NESTOR_PASSWORD),
            ],
            None,
        )
        .await;
        assert!(
            !reply.body.contains(r#"id="permissions""#),
            "no consent page for a user of another tenant"
        );
        let v = check_redirect_error(
            &em,
            &reply,
            COLLECTOR_REPLY,
            "invalid_request",
            50020,
            "contoso-only",
        );
        assert!(str_of(&v, "error_description").contains("'Contoso'"), "{v}");

        // A delegated token is only issued for what was consented (reference §4: 65001). Today
        // the v1 endpoint mints a token with `"scp": ""` for a resource nobody consented to:
        // here the Teams client (consented for Graph and ACS only) asks for the Management API.
        let form = [
            ("grant_type", "password".to_string()),
            ("client_id", TEAMS_CLIENT.to_string()),
            ("username", ADELE.to_string()),
            ("password", ADELE_PASSWORD.to_string()),
            ("resource", MANAGE.to_string()),
        ];
        let (status, headers, body) = post_form(&http, &token_url_v1(&em, CONTOSO), &form).await;
        check_error_with_suberror(&em, status, &headers, &body, 400, 65001, "consent_required");
    })
    .await;
}
