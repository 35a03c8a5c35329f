//! The user flows with real clients: a headless Chromium driven by Selenium through the sign-in
//! and admin-consent pages (seed 002: Northwind's admin consents to Contoso's audit collector),
//! and unmodified MSAL Python through the confidential auth-code flow, refresh-token expiry
//! after 90 idle days, and ROPC with its user-realm discovery on port 443.
//!
//! Run it with `scripts/test.sh -p m365-emulator --test browser_and_msal_user_flows`: that
//! script builds the venv of tests/clients/requirements.txt (MSAL, Selenium) and installs
//! Debian's chromium and chromium-driver when they are missing. Set M365EMU_SKIP_CLIENT_TESTS=1
//! to skip these tests when no venv is at hand.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use m365_emulator::journal::{JournalEntry, JournalQuery};
use m365_emulator::{Emulator, StartError, World};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::{
    client, jwks, post_form, python, secret_form_v2, start_with, token_url_v1, token_url_v2,
    verify_token, COLLECTOR, COLLECTOR_SECRET, CONTOSO, MANAGE, START_TIMEOUT, TEAMS_PHONE,
};

const NORTHWIND: &str = "7bc28254-818f-4f09-a860-6fcae669c511";
const NORTHWIND_ADMIN: &str = "admin@northwind.onmicrosoft.com";
const NORTHWIND_ADMIN_OID: &str = "f56e6b06-24ca-4281-95ce-e0efa67b36bb";
const NORTHWIND_ADMIN_PASSWORD: &str = "Northwind-Admin-1!";
const ADELE: &str = "adele@contoso.onmicrosoft.com";
const ADELE_OID: &str = "61927486-f404-463f-b72a-7aa7c4ad5433";
const ADELE_PASSWORD: &str = "Adele-Pass-1!";
/// Contoso's Teams client: a public client (no secret).
const TEAMS_CLIENT: &str = "81a839dc-b25b-4552-bb03-aa9fa33cc6a0";
/// A reply URL the default world registers for the Teams-phone backend.
const TEAMS_PHONE_REPLY: &str = "https://localhost:5003/auth/callback";
const GRAPH: &str = "https://graph.microsoft.com";
/// A browser start, two page loads and a redirect, on a busy 2-core machine.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(240);

// -------------------------------------------------------------------------------------------
// Helpers
// -------------------------------------------------------------------------------------------

/// Debian's chromium and chromedriver, as scripts/test.sh exports them.
fn browser_binaries() -> (String, String) {
    let get = |var: &str, default: &str| {
        let path = std::env::var(var).unwrap_or_else(|_| default.to_string());
        assert!(
            Path::new(&path).exists(),
            "{path} ({var}) does not exist: run the tests with scripts/test.sh, which installs \
             Debian's chromium and chromium-driver (apt-get) when they are missing"
        );
        path
    };
    (
        get("M365EMU_CHROMIUM", "/usr/bin/chromium"),
        get("M365EMU_CHROMEDRIVER", "/usr/bin/chromedriver"),
    )
}

/// The app's secret as the ready info lists it.
fn secret_of(emulator: &Emulator, client_id: &str) -> String {
    emulator
        .ready()
        .tenants
        .iter()
        .flat_map(|t| t.applications.iter())
        .find(|a| a.client_id == client_id)
        .and_then(|a| a.client_secret.clone())
        .unwrap_or_else(|| panic!("the ready info lists a secret for {client_id}"))
}

fn journal(emulator: &Emulator, operation: &str) -> Vec<JournalEntry> {
    emulator
        .journal()
        .query(&JournalQuery {
            operation: Some(operation.into()),
            ..Default::default()
        })
        .into_iter()
        .map(|e| (*e).clone())
        .collect()
}

/// The claims of a JWT, unverified (for tokens verified elsewhere or error paths).
fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let seg = token.split('.').nth(1).expect("claims segment");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(seg)
        .expect("base64url claims");
    serde_json::from_slice(&bytes).expect("claims JSON")
}

fn has_role(claims: &Value, role: &str) -> bool {
    claims["roles"]
        .as_array()
        .is_some_and(|r| r.iter().any(|x| x == role))
}

/// A tiny HTTP server standing in for the app's reply URL: answers every request with
/// 200 "signed in" and records the request lines.
struct CallbackServer {
    /// `http://127.0.0.1:{port}/callback`
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CallbackServer {
    async fn start() -> CallbackServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the callback listener");
        let port = listener.local_addr().expect("callback address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(Self::answer(conn, log.clone()));
            }
        });
        CallbackServer {
            url: format!("http://127.0.0.1:{port}/callback"),
            requests,
            task,
        }
    }

    async fn answer(mut conn: TcpStream, log: Arc<Mutex<Vec<String>>>) {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        // Browsers open speculative connections that never send anything: give up on those.
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            true
        })
        .await;
        if read != Ok(true) {
            return;
        }
        let text = String::from_utf8_lossy(&head);
        let line = text.lines().next().unwrap_or_default().to_string();
        log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        let body = "<!DOCTYPE html><html><head><title>signed in</title></head>\
                    <body><h1>signed in</h1></body></html>";
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = conn.write_all(resp.as_bytes()).await;
        let _ = conn.shutdown().await;
    }

    fn request_lines(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for CallbackServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// -------------------------------------------------------------------------------------------
// Seed 002 in a real browser: Northwind's admin consents to the audit collector.
// -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn northwind_admin_consents_in_headless_chromium_then_the_collector_reads_northwind() {
    let Some(py) = python::test_python() else {
        return;
    };
    let (chromium, chromedriver) = browser_binaries();

    // The app's reply URL: a local listener, registered for the collector (and the Teams-phone
    // backend) in an otherwise default world.
    let callback = CallbackServer::start().await;
    let mut world = World::default_world().expect("the default world");
    let mut registered = 0;
    for app in world
        .applications
        .iter_mut()
        .filter(|a| [COLLECTOR, TEAMS_PHONE].contains(&a.client_id.to_string().as_str()))
    {
        app.reply_urls.push(callback.url.clone());
        registered += 1;
    }
    assert_eq!(registered, 2, "the default world has both apps");
    let emulator = start_with(Emulator::builder().key_seed(42).world(world)).await;
    let http = client(&emulator);

    // Before consent: Northwind has no service principal for the collector.
    let (status, _, body) = post_form(
        &http,
        &token_url_v2(&emulator, NORTHWIND),
        &secret_form_v2(COLLECTOR, COLLECTOR_SECRET),
    )
    .await;
    assert_eq!(status, 401, "app-only before consent: {body}");
    assert_eq!(body["error"], "unauthorized_client", "{body}");
    assert_eq!(body["error_codes"], serde_json::json!([700016]), "{body}");

    let screenshot: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("browser_and_msal_user_flows")
        .join("northwind-admin-consent.png");
    let _ = std::fs::remove_file(&screenshot);
    let state = uuid::Uuid::new_v4().to_string();

    // The pages go over the plain-HTTP listener: no CA to install in the browser and no
    // --ignore-certificate-errors (see browser_consent.py).
    let run = python::Script::new(&py, "browser_consent.py")
        .trust_ca(&emulator.ca_path())
        .env("M365EMU_HTTP_URL", emulator.uri())
        .env("M365EMU_CLIENT_ID", COLLECTOR)
        .env("M365EMU_RESOURCE", MANAGE)
        .env("M365EMU_REDIRECT_URI", &callback.url)
        .env("M365EMU_STATE", &state)
        .env("M365EMU_USERNAME", NORTHWIND_ADMIN)
        .env("M365EMU_PASSWORD", NORTHWIND_ADMIN_PASSWORD)
        .env("M365EMU_APP_NAME", "Contoso Audit Collector")
        .env(
            "M365EMU_PERMISSIONS",
            "ActivityFeed.Read,ActivityFeed.ReadDlp,ServiceHealth.Read",
        )
        .env("M365EMU_SCREENSHOT", screenshot.display().to_string())
        .env("M365EMU_CHROMIUM", &chromium)
        .env("M365EMU_CHROMEDRIVER", &chromedriver)
        .timeout(BROWSER_TIMEOUT)
        .run_ok()
        .await;
    println!("{}", run.stdout.trim_end());

    // What the browser landed on.
    let result = run.line_with("callback");
    let query = &result["query"];
    let code = query["code"]
        .as_str()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| panic!("no code in the callback: {result}\n{}", run.dump()));
    assert_eq!(query["state"], state.as_str(), "{result}");
    assert_eq!(query["admin_consent"], "True", "{result}");
    assert!(query.get("error").is_none(), "{result}");
    // And what the app's listener received.
    let lines = callback.request_lines();
    assert!(
        lines.iter().any(|l| l.starts_with("GET /callback?")
            && l.contains(&format!("code={code}"))
            && l.contains(&format!("state={state}"))),
        "the callback listener saw {lines:?}"
    );

    // The emulator recorded the consent: the last authorize step finished for Northwind's admin.
    let authorize = journal(&emulator, "entra.authorize");
    let finished: Vec<&JournalEntry> = authorize.iter().filter(|e| e.status == 302).collect();
    assert_eq!(finished.len(), 1, "{authorize:#?}");
    assert_eq!(finished[0].tenant.as_deref(), Some(NORTHWIND));
    assert_eq!(finished[0].user.as_deref(), Some(NORTHWIND_ADMIN_OID));
    assert_eq!(finished[0].client_id.as_deref(), Some(COLLECTOR));

    // The app redeems the code (v1, /common, its secret) for the Management API.
    let form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("client_id", COLLECTOR.to_string()),
        ("client_secret", COLLECTOR_SECRET.to_string()),
        ("code", code.to_string()),
        ("redirect_uri", callback.url.clone()),
        ("resource", MANAGE.to_string()),
    ];
    let (status, _, body) = post_form(&http, &token_url_v1(&emulator, "common"), &form).await;
    assert_eq!(status, 200, "redeeming the code: {body}");
    let keys = jwks(&http, &emulator).await;
    let iss = format!("https://sts.windows.net/{NORTHWIND}/");
    let access_token = body["access_token"].as_str().expect("access_token");
    let (_, claims) = verify_token(access_token, &keys, MANAGE, &iss)
        .unwrap_or_else(|e| panic!("delegated token: {e}; claims {}", claims_of(access_token)));
    assert_eq!(claims["tid"], NORTHWIND, "{claims}");
    assert_eq!(claims["upn"], NORTHWIND_ADMIN, "{claims}");
    assert_eq!(claims["appid"], COLLECTOR, "{claims}");
    assert_eq!(body["resource"], MANAGE, "{body}");

    // After consent: the collector gets app-only tokens for Northwind, with its roles.
    let (status, _, body) = post_form(
        &http,
        &token_url_v2(&emulator, NORTHWIND),
        &secret_form_v2(COLLECTOR, COLLECTOR_SECRET),
    )
    .await;
    assert_eq!(status, 200, "app-only after consent: {body}");
    let app_token = body["access_token"].as_str().expect("access_token");
    let (_, claims) = verify_token(app_token, &keys, MANAGE, &iss)
        .unwrap_or_else(|e| panic!("app-only token: {e}; claims {}", claims_of(app_token)));
    assert_eq!(claims["tid"], NORTHWIND, "{claims}");
    assert_eq!(claims["idtyp"], "app", "{claims}");
    for role in [
        "ActivityFeed.Read",
        "ActivityFeed.ReadDlp",
        "ServiceHealth.Read",
    ] {
        assert!(has_role(&claims, role), "{role} missing: {claims}");
    }

    // The screenshot of the consent page.
    let png = std::fs::read(&screenshot)
        .unwrap_or_else(|e| panic!("screenshot {}: {e}", screenshot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        screenshot.display()
    );
    assert!(
        png.len() > 10_000,
        "{} is only {} bytes",
        screenshot.display(),
        png.len()
    );
    println!(
        "consent-page screenshot: {} ({} bytes)",
        screenshot.display(),
        png.len()
    );

    emulator.shutdown().await;
}

// -------------------------------------------------------------------------------------------
// MSAL Python: confidential auth-code flow, refresh and its 90-day inactivity limit
// -------------------------------------------------------------------------------------------

/// An emulator with auto sign-in: authorize answers 302 straight away for `login_hint`.
async fn auto_sign_in_emulator() -> Emulator {
    start_with(Emulator::builder().key_seed(42).auto_sign_in(true)).await
}

/// msal_user_flows.py for the Teams-phone backend (confidential) and Adele.
fn teams_phone_script(py: &str, emulator: &Emulator, case: &str) -> python::Script {
    python::Script::new(py, "msal_user_flows.py")
        .arg(case)
        .trust_ca(&emulator.ca_path())
        .env(
            "M365EMU_AUTHORITY",
            format!("{}/{CONTOSO}", emulator.https_uri()),
        )
        .env("M365EMU_CONTROL_URL", emulator.https_uri())
        .env("M365EMU_TENANT_ID", CONTOSO)
        .env("M365EMU_CLIENT_ID", TEAMS_PHONE)
        .env("M365EMU_CLIENT_SECRET", secret_of(emulator, TEAMS_PHONE))
        .env("M365EMU_REDIRECT_URI", TEAMS_PHONE_REPLY)
        .env("M365EMU_USERNAME", ADELE)
}

fn assert_case_ok(run: &python::ScriptRun, name: &str) -> Value {
    let case = run.case(name).clone();
    assert_eq!(case["ok"], true, "case {name}: {case}\n{}", run.dump());
    case
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_python_confidential_auth_code_flow() {
    let Some(py) = python::test_python() else {
        return;
    };
    let emulator = auto_sign_in_emulator().await;
    let run = teams_phone_script(&py, &emulator, "auth_code")
        .run_ok()
        .await;
    println!("{}", run.stdout.trim_end());
    let case = assert_case_ok(&run, "auth_code");
    assert_eq!(case["access_token_claims"]["upn"], ADELE, "{case}");
    assert_eq!(case["access_token_claims"]["aud"], GRAPH, "{case}");
    assert_eq!(case["id_token_claims"]["oid"], ADELE_OID, "{case}");

    // The emulator saw one authorize (answered with the redirect at once) and one token call.
    let authorize = journal(&emulator, "entra.authorize");
    assert_eq!(authorize.len(), 1, "{authorize:#?}");
    assert_eq!(authorize[0].status, 302, "{authorize:#?}");
    assert_eq!(authorize[0].user.as_deref(), Some(ADELE_OID));
    assert!(
        authorize[0].path.ends_with("/oauth2/v2.0/authorize"),
        "{authorize:#?}"
    );
    let tokens = journal(&emulator, "entra.token");
    assert_eq!(tokens.len(), 1, "{tokens:#?}");
    assert_eq!(tokens[0].status, 200, "{tokens:#?}");
    assert_eq!(tokens[0].client_id.as_deref(), Some(TEAMS_PHONE));
    assert_eq!(tokens[0].user.as_deref(), Some(ADELE_OID));

    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_python_refresh_token_then_expiry_after_91_idle_days() {
    let Some(py) = python::test_python() else {
        return;
    };
    let emulator = auto_sign_in_emulator().await;
    let before = emulator.clock().now();
    let run = teams_phone_script(&py, &emulator, "refresh").run_ok().await;
    println!("{}", run.stdout.trim_end());
    let case = assert_case_ok(&run, "refresh");
    assert_eq!(case["refresh_token_source"], "identity_provider", "{case}");
    assert_eq!(case["expired"]["error"], "invalid_grant", "{case}");
    assert_eq!(
        case["expired"]["error_codes"],
        serde_json::json!([700082]),
        "{case}"
    );
    assert!(
        case["acquire_token_silent_after_expiry"].is_null(),
        "{case}"
    );

    // The script moved the emulator's clock by 91 days.
    let moved = emulator.clock().now() - before;
    assert!(
        moved >= time::Duration::days(91) && moved < time::Duration::days(92),
        "the clock moved by {moved}"
    );

    // The token calls: the code, the refresh, then one refused refresh (700082). The script's
    // last acquire_token_silent sends nothing: MSAL answers an identical request from its
    // "UI required" cache of HTTP 400 answers (60 s, msal/throttled_http_client.py).
    let tokens = journal(&emulator, "entra.token");
    let seen: Vec<(u16, Option<&str>)> = tokens
        .iter()
        .map(|e| (e.status, e.error_code.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [(200, None), (200, None), (400, Some("AADSTS700082"))],
        "{tokens:#?}"
    );
    for e in &tokens {
        assert_eq!(e.client_id.as_deref(), Some(TEAMS_PHONE), "{e:#?}");
    }

    emulator.shutdown().await;
}

// -------------------------------------------------------------------------------------------
// MSAL Python ROPC: the user-realm discovery goes to port 443 of the authority's host.
// The only test of the whole suite that binds port 443.
// -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_python_ropc_with_user_realm_discovery_on_port_443() {
    let Some(py) = python::test_python() else {
        return;
    };
    // MSAL Python sends `GET https://{host}/common/userrealm/{user}` to port 443 whatever the
    // authority's port: this emulator listens there (root on CI).
    let started = tokio::time::timeout(
        START_TIMEOUT,
        Emulator::builder().key_seed(42).https_port(443).start(),
    )
    .await
    .expect("the emulator starts in time");
    let emulator = match started {
        Ok(e) => e,
        Err(StartError::Bind { addr, source })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            panic!(
                "cannot bind {addr}: permission denied. This test needs port 443 (MSAL Python's \
                 ROPC sends its user-realm discovery there): run it as root (as CI does) or \
                 grant the test binary CAP_NET_BIND_SERVICE ({source})"
            )
        }
        Err(StartError::Bind { addr, source })
            if source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            panic!(
                "cannot bind {addr}: something else already listens on port 443 \
                 (is another emulator running?): {source}"
            )
        }
        Err(e) => panic!("the emulator on port 443 does not start: {e}"),
    };
    assert_eq!(emulator.https_addr().port(), 443);

    // 1. The user-realm route as the emulator serves it: a cloud-only ("Managed") user.
    let phase = ropc_run(&py, &emulator).await;
    let realm = &phase.realm;
    assert_eq!(realm.status, 200, "{:#?}", phase.requests);
    assert_eq!(realm.operation, "entra.user_realm", "{:#?}", phase.requests);
    println!("user-realm discovery answered {}", realm.status);

    // 2. A 404 there (what the emulator answered before it served the route; also a real
    //    host without the route): MSAL tolerates it and goes on with the password grant.
    emulator.journal().clear();
    let fault = emulator
        .add_fault(serde_json::json!({
            "match": {"operation": "entra.user_realm"},
            "action": {"status": 404, "body": {"error": {"code": "NotFound",
                "message": "m365-emulator serves no resource at this path"}}},
        }))
        .expect("the fault rule is valid");
    let phase = ropc_run(&py, &emulator).await;
    assert_eq!(phase.realm.status, 404, "{:#?}", phase.requests);
    assert!(phase.realm.fault.is_some(), "{:#?}", phase.requests);
    println!("user-realm discovery answered 404: MSAL went on with the password grant");
    drop(fault);

    emulator.shutdown().await;
}

/// What one ROPC run of MSAL sent to the emulator.
struct RopcPhase {
    realm: JournalEntry,
    requests: Vec<String>,
}

/// msal_user_flows.py ropc against `https://127.0.0.1/{tenant}`, then the journal's view:
/// discovery, the user realm (on port 443), then exactly one successful password grant.
async fn ropc_run(py: &str, emulator: &Emulator) -> RopcPhase {
    let run = python::Script::new(py, "msal_user_flows.py")
        .arg("ropc")
        .trust_ca(&emulator.ca_path())
        .env("M365EMU_AUTHORITY", format!("https://127.0.0.1/{CONTOSO}"))
        .env("M365EMU_CONTROL_URL", "https://127.0.0.1")
        .env("M365EMU_TENANT_ID", CONTOSO)
        .env("M365EMU_CLIENT_ID", TEAMS_CLIENT)
        .env("M365EMU_USERNAME", ADELE)
        .env("M365EMU_PASSWORD", ADELE_PASSWORD)
        .run_ok()
        .await;
    println!("{}", run.stdout.trim_end());
    let case = assert_case_ok(&run, "ropc");
    assert_eq!(case["access_token_claims"]["upn"], ADELE, "{case}");
    assert_eq!(case["access_token_claims"]["appidacr"], "0", "{case}");

    let all = emulator.journal().query(&JournalQuery::default());
    let requests: Vec<String> = all
        .iter()
        .map(|e| {
            format!(
                "{} {}{} -> {} ({})",
                e.method,
                e.path,
                e.query
                    .as_deref()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default(),
                e.status,
                e.operation
            )
        })
        .collect();
    let realm_path = format!("/common/userrealm/{ADELE}");
    let realm: Vec<_> = all.iter().filter(|e| e.path == realm_path).collect();
    assert_eq!(realm.len(), 1, "user-realm discovery: {requests:#?}");
    assert_eq!(realm[0].method, "GET", "{requests:#?}");
    let tokens: Vec<_> = all
        .iter()
        .filter(|e| e.operation == "entra.token")
        .collect();
    assert_eq!(tokens.len(), 1, "{requests:#?}");
    assert_eq!(tokens[0].status, 200, "{requests:#?}");
    assert_eq!(tokens[0].client_id.as_deref(), Some(TEAMS_CLIENT));
    assert_eq!(tokens[0].user.as_deref(), Some(ADELE_OID));
    let realm_at = all.iter().position(|e| e.path == realm_path);
    let token_at = all.iter().position(|e| e.operation == "entra.token");
    assert!(realm_at < token_at, "{requests:#?}");
    RopcPhase {
        realm: JournalEntry::clone(realm[0]),
        requests,
    }
}
