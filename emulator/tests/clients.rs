//! The real, unmodified client libraries against the emulator.
//!
//! Runs tests/clients/msal_app_only.py with the Python of the venv that scripts/test.sh builds
//! from tests/clients/requirements.txt (pinned MSAL Python, azure-identity, PyJWT), and checks
//! on the emulator's journal that the clients' cached acquisitions never reached it.
//!
//! Run it with `scripts/test.sh --test clients`. Set M365EMU_SKIP_CLIENT_TESTS=1 to skip it
//! when no venv is at hand.

mod support;

use std::time::Duration;

use m365_emulator::ready::{ReadyApplication, ReadyTenant};
use m365_emulator::Emulator;
use serde_json::Value;

use support::python::{test_python, Script};
use support::{start, COLLECTOR, CONTOSO, CONTOSO_DOMAIN};

fn contoso_collector(emulator: &Emulator) -> (&ReadyTenant, &ReadyApplication) {
    let tenant = emulator
        .ready()
        .tenants
        .iter()
        .find(|t| t.id == CONTOSO)
        .expect("the default world has Contoso");
    let app = tenant
        .applications
        .iter()
        .find(|a| a.client_id == COLLECTOR)
        .expect("Contoso lists the audit collector");
    (tenant, app)
}

fn path_str(p: Option<&std::path::PathBuf>, what: &str) -> String {
    p.unwrap_or_else(|| panic!("the collector has no {what} in the ready info"))
        .display()
        .to_string()
}

/// tests/clients/msal_app_only.py for Contoso's audit collector (secret and certificate).
fn app_only_script(python: &str, emulator: &Emulator) -> Script {
    let (tenant, app) = contoso_collector(emulator);
    Script::new(python, "msal_app_only.py")
        .trust_ca(&emulator.ca_path())
        .env("M365EMU_HTTPS_URL", emulator.https_uri())
        .env("M365EMU_TENANT_ID", &tenant.id)
        .env("M365EMU_CLIENT_ID", &app.client_id)
        .env(
            "M365EMU_CLIENT_SECRET",
            app.client_secret
                .as_deref()
                .expect("the collector has a valid secret"),
        )
        .env(
            "M365EMU_CERT_PEM_PATH",
            path_str(app.certificate_pem_path.as_ref(), "certificate PEM"),
        )
        .env(
            "M365EMU_KEY_PEM_PATH",
            path_str(app.private_key_pem_path.as_ref(), "private key PEM"),
        )
        .env(
            "M365EMU_CERT_COMBINED_PATH",
            path_str(app.certificate_path.as_ref(), "combined PEM"),
        )
        .env(
            "M365EMU_THUMBPRINT_SHA1",
            app.thumbprint_sha1
                .as_deref()
                .expect("the collector has a certificate"),
        )
}

/// `GET /_emulator/journal?operation=entra.token` (plain HTTP: same router, no TLS needed).
async fn token_journal(emulator: &Emulator) -> Vec<Value> {
    let url = format!("{}/_emulator/journal?operation=entra.token", emulator.uri());
    let resp = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status();
    let body = resp.text().await.expect("journal body");
    assert!(status.is_success(), "GET {url}: {status}\n{body}");
    let entries: Vec<Value> = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET {url}: not a JSON array ({e}):\n{body}"));
    entries
        .into_iter()
        .filter(|e| e["operation"] == "entra.token")
        .collect()
}

/// The header of a journalled client assertion (`{"header": …, "claims": …}`), if any.
fn assertion_header(entry: &Value) -> Option<&serde_json::Map<String, Value>> {
    let a = entry.get("assertion").filter(|a| !a.is_null())?;
    a.get("header").unwrap_or(a).as_object()
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum AssertionKind {
    /// No assertion: a client secret.
    Secret,
    /// RS256 with `x5t` (SHA-1), no `x5t#S256`.
    Rs256X5t {
        x5c: bool,
    },
    /// PS256 with `x5t#S256` (SHA-256).
    Ps256X5tS256 {
        x5c: bool,
    },
    Other(String),
}

fn classify(entry: &Value) -> AssertionKind {
    let Some(h) = assertion_header(entry) else {
        return AssertionKind::Secret;
    };
    let has = |k: &str| {
        h.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    let x5c = h
        .get("x5c")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    match h.get("alg").and_then(Value::as_str) {
        Some("RS256") if has("x5t") && !has("x5t#S256") => AssertionKind::Rs256X5t { x5c },
        Some("PS256") if has("x5t#S256") => AssertionKind::Ps256X5tS256 { x5c },
        _ => AssertionKind::Other(Value::Object(h.clone()).to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_python_and_azure_identity_get_app_only_tokens() {
    let Some(python) = test_python() else {
        return;
    };
    let emulator = start().await;

    let run = app_only_script(&python, &emulator).run_ok().await;
    println!("{}", run.stdout.trim_end());

    // What each client says it sent to the token endpoint (cached acquisitions excluded).
    let mut client_count = 0;
    for (name, alg) in [
        ("secret", "RS256"),
        ("thumbprint", "RS256"),
        ("public_certificate", "RS256"),
        ("azure_identity", "RS256"),
    ] {
        let case = run.case(name);
        assert_eq!(case["ok"], true, "case {name}: {case}\n{}", run.dump());
        assert_eq!(case["alg"], alg, "case {name}: {case}");
        assert_eq!(
            case["token_requests"], 1,
            "case {name}: one token request, then the cache: {case}"
        );
        client_count += case["token_requests"].as_u64().unwrap_or(0);
    }
    assert_eq!(client_count, 4);

    // What the emulator saw: exactly one successful token request per case.
    let journal = token_journal(&emulator).await;
    let ok: Vec<&Value> = journal.iter().filter(|e| e["status"] == 200).collect();
    let dump = serde_json::to_string_pretty(&journal).unwrap_or_default();
    assert_eq!(
        ok.len() as u64,
        client_count,
        "successful entra.token requests in the journal (cached acquisitions must add none):\n{dump}"
    );
    assert_eq!(
        journal.len(),
        ok.len(),
        "no token request may fail:\n{dump}"
    );
    for e in &ok {
        assert_eq!(e["method"], "POST", "{e}");
        assert_eq!(e["client_id"], COLLECTOR, "{e}");
        assert!(
            e["tenant"] == CONTOSO || e["tenant"] == CONTOSO_DOMAIN,
            "tenant of {e}"
        );
        assert!(e["error_code"].is_null(), "{e}");
        assert!(e["fault"].is_null(), "{e}");
        assert!(
            e["path"]
                .as_str()
                .is_some_and(|p| p.starts_with(&format!("/{CONTOSO}/oauth2/"))),
            "path of {e}"
        );
    }
    let mut kinds: Vec<AssertionKind> = ok.iter().map(|e| classify(e)).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            // (a) MSAL with the secret
            AssertionKind::Secret,
            // (b) MSAL {"private_key", "thumbprint"} and (e) azure-identity CertificateCredential
            AssertionKind::Rs256X5t { x5c: false },
            AssertionKind::Rs256X5t { x5c: false },
            // (c) MSAL {"private_key", "public_certificate"}
            AssertionKind::Ps256X5tS256 { x5c: true },
        ],
        "client assertions seen by the emulator:\n{dump}"
    );

    emulator.shutdown().await;
}

// -------------------------------------------------------------------------------------------
// Managed identity: azure-identity's ManagedIdentityCredential (App Service source, then IMDS
// through AZURE_POD_IDENTITY_AUTHORITY_HOST) against the plain-HTTP listener.
// -------------------------------------------------------------------------------------------

/// tests/clients/managed_identity.py for the default world's managed identity: the App Service
/// endpoint and, through AZURE_POD_IDENTITY_AUTHORITY_HOST, IMDS on the plain-HTTP listener.
fn managed_identity_script(python: &str, emulator: &Emulator) -> Script {
    let ready = emulator.ready();
    let mi = ready
        .managed_identities
        .first()
        .expect("the default world has a managed identity");
    Script::new(python, "managed_identity.py")
        .trust_ca(&emulator.ca_path())
        .env("M365EMU_HTTPS_URL", emulator.https_uri())
        .env("IDENTITY_ENDPOINT", &ready.identity_endpoint)
        .env("IDENTITY_HEADER", &ready.identity_header)
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", emulator.uri())
        .env("M365EMU_TENANT_ID", &mi.tenant)
        .env("M365EMU_MI_CLIENT_ID", &mi.client_id)
        .env("M365EMU_MI_OBJECT_ID", &mi.object_id)
        .env(
            "M365EMU_MI_RESOURCE_ID",
            mi.resource_id
                .as_deref()
                .expect("the managed identity has a resource id"),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_identity_managed_identity_credential_gets_tokens() {
    const MI_CLIENT: &str = "cfc00a46-9534-46d0-bc3a-7755df4c5622";
    let Some(python) = test_python() else {
        return;
    };
    let emulator = start().await;
    assert_eq!(
        emulator.ready().managed_identities[0].client_id,
        MI_CLIENT,
        "the default world's managed identity"
    );

    let run = managed_identity_script(&python, &emulator).run_ok().await;
    println!("{}", run.stdout.trim_end());

    let mut token_requests = 0;
    for name in [
        "app_service_system",
        "app_service_client_id",
        "app_service_resource_id",
        "app_service_object_id",
        "imds_system",
    ] {
        let case = run.case(name);
        assert_eq!(case["ok"], true, "case {name}: {case}\n{}", run.dump());
        assert_eq!(case["claims"]["appid"], MI_CLIENT, "case {name}: {case}");
        assert!(
            case["claims"]["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r == "Communication.Manage")),
            "case {name}: {case}"
        );
        assert_eq!(
            case["token_requests"], 1,
            "case {name}: one request, then the cache: {case}"
        );
        token_requests += 1;
    }
    for name in ["app_service_unknown_identity", "imds_unknown_identity"] {
        let case = run.case(name);
        assert_eq!(case["ok"], true, "case {name}: {case}\n{}", run.dump());
    }

    // What the emulator saw: one successful request per token case, on the right endpoint,
    // and the two refusals.
    let journal = emulator
        .journal()
        .query(&m365_emulator::journal::JournalQuery {
            operation: Some("entra.managed_identity".into()),
            ..Default::default()
        });
    let dump = format!("{journal:#?}");
    let ok: Vec<_> = journal.iter().filter(|e| e.status == 200).collect();
    assert_eq!(ok.len(), token_requests, "successful requests:\n{dump}");
    for e in &ok {
        assert_eq!(e.method, "GET", "{dump}");
        assert_eq!(e.client_id.as_deref(), Some(MI_CLIENT), "{dump}");
        assert_eq!(e.tenant.as_deref(), Some(CONTOSO), "{dump}");
        assert!(e.token_id.is_some(), "{dump}");
        assert!(e.fault.is_none(), "{dump}");
    }
    let paths: Vec<&str> = ok.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/msi/token",
            "/msi/token",
            "/msi/token",
            "/msi/token",
            "/metadata/identity/oauth2/token"
        ],
        "{dump}"
    );
    let refused: Vec<_> = journal.iter().filter(|e| e.status != 200).collect();
    assert_eq!(refused.len(), 2, "{dump}");
    for e in refused {
        assert_eq!(e.status, 400, "{dump}");
        assert_eq!(
            e.error_code.as_deref(),
            Some("identity_not_found"),
            "{dump}"
        );
    }

    emulator.shutdown().await;
}
