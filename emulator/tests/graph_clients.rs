//! The real msgraph-sdk (Python, pinned in tests/clients/requirements.txt) against the
//! emulator: an app-only ClientSecretCredential from the emulator's Entra creates an online
//! meeting for a user covered by an application access policy and surfaces the 403 for one
//! who is not.

mod support;

use serde_json::{json, Value};
use support::python::{test_python, Script};
use support::*;

const TEAMS_PHONE_SECRET: &str = "teams-phone-secret~0123456789abcdefghij";
const ADELE: &str = "adele@contoso.onmicrosoft.com";
const MEGAN: &str = "megan@contoso.onmicrosoft.com";

async fn admin(e: &m365_emulator::Emulator, path: &str, body: Value) {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(format!("{}{path}", e.uri()))
        .json(&body)
        .send()
        .await
        .expect("admin request");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
}

#[tokio::test]
async fn msgraph_sdk_creates_meetings_only_for_covered_users() {
    let Some(python) = test_python() else {
        return;
    };
    let e = start().await;
    admin(
        &e,
        "/_emulator/teams/applicationAccessPolicies",
        json!({"identity": "Test-policy", "appIds": [TEAMS_PHONE]}),
    )
    .await;
    admin(
        &e,
        "/_emulator/teams/applicationAccessPolicies/Test-policy/grant",
        json!({"userId": ADELE}),
    )
    .await;
    let run = Script::new(&python, "graph_meetings.py")
        .trust_ca(&e.ca_path())
        .env("M365EMU_HTTPS_URL", e.https_uri())
        .env("M365EMU_TENANT_ID", CONTOSO)
        .env("M365EMU_CLIENT_ID", TEAMS_PHONE)
        .env("M365EMU_CLIENT_SECRET", TEAMS_PHONE_SECRET)
        .env("M365EMU_COVERED_USER", ADELE)
        .env("M365EMU_UNCOVERED_USER", MEGAN)
        .run_ok()
        .await;
    let covered = run.case("covered");
    assert_eq!(covered["ok"], true, "{covered}");
    let uncovered = run.case("uncovered");
    assert_eq!(uncovered["status"], 403, "{uncovered}");

    // Both Graph calls carried the bearer token over HTTPS: the journal names the app.
    let journal: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!(
            "{}/_emulator/journal?operation=graph.onlineMeetings.create",
            e.uri()
        ))
        .send()
        .await
        .expect("journal")
        .json()
        .await
        .expect("JSON");
    let entries = journal["entries"]
        .as_array()
        .or_else(|| journal.as_array())
        .cloned()
        .unwrap_or_default();
    assert_eq!(entries.len(), 2, "{journal}");
    for entry in &entries {
        assert_eq!(entry["client_id"], TEAMS_PHONE, "{entry}");
    }
}
