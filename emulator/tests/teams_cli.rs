//! `m365-emulator teams …`: the application-access-policy cmdlets as subcommands against a
//! running emulator (in-process here; the CLI is the real binary).

mod support;

use std::process::Command;

use serde_json::Value;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_m365-emulator");

/// Runs the CLI off the async runtime; returns (exit code, stdout, stderr).
async fn teams(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(BIN)
            .arg("teams")
            .args(&args)
            .env_remove("M365EMU_URL")
            .env_remove("M365EMU_READY_FILE")
            .output()
            .expect("run m365-emulator teams");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

fn args(emulator: &str, rest: &[&str]) -> Vec<String> {
    let mut v = vec!["--emulator".to_string(), emulator.to_string()];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

#[tokio::test]
async fn cmdlets_manage_policies_of_a_running_emulator() {
    let e = start().await;
    let url = e.uri().to_string();
    let (code, out, err) = teams(args(
        &url,
        &[
            "new-application-access-policy",
            "--identity",
            "Test-policy",
            "--app-ids",
            TEAMS_PHONE,
            "--description",
            "Meetings daemon",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(v["identity"], "Tag:Test-policy");

    let (code, _, err) = teams(args(
        &url,
        &[
            "set-application-access-policy",
            "--identity",
            "Test-policy",
            "--add-app-ids",
            COLLECTOR,
        ],
    ))
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = teams(args(
        &url,
        &[
            "grant-application-access-policy",
            "--policy-name",
            "Test-policy",
            "--identity",
            "adele@contoso.onmicrosoft.com",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = teams(args(
        &url,
        &[
            "grant-application-access-policy",
            "--policy-name",
            "Test-policy",
            "--global",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = teams(args(
        &url,
        &["get-application-access-policy", "--identity", "Test-policy"],
    ))
    .await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(v["appIds"], serde_json::json!([TEAMS_PHONE, COLLECTOR]));
    assert_eq!(
        v["grantedTo"],
        serde_json::json!(["61927486-f404-463f-b72a-7aa7c4ad5433"])
    );
    assert_eq!(v["global"], true);

    // -PolicyName $null: unassign the user.
    let (code, _, err) = teams(args(
        &url,
        &[
            "grant-application-access-policy",
            "--identity",
            "adele@contoso.onmicrosoft.com",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = teams(args(&url, &["settings", "--propagation-seconds", "1800"])).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1800"), "{out}");

    // Errors: the emulator's message, a non-zero exit.
    let (code, _, err) = teams(args(
        &url,
        &["new-application-access-policy", "--identity", "test-policy"],
    ))
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = teams(args(
        &url,
        &["remove-application-access-policy", "--identity", "Nope"],
    ))
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("does not exist"), "{err}");
    let (code, _, _) = teams(args(
        &url,
        &[
            "grant-application-access-policy",
            "--policy-name",
            "Test-policy",
        ],
    ))
    .await;
    assert_ne!(code, 0, "--identity or --global is required");

    let (code, out, err) = teams(args(
        &url,
        &[
            "remove-application-access-policy",
            "--identity",
            "Tag:Test-policy",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed"), "{out}");
    let (code, out, _) = teams(args(&url, &["get-application-access-policy"])).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(v["value"], serde_json::json!([]));
}

#[tokio::test]
async fn without_a_running_emulator_the_cli_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("ready.json");
    let (code, _, err) = teams(vec![
        "--ready-file".into(),
        missing.display().to_string(),
        "get-application-access-policy".into(),
    ])
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("no running emulator"), "{err}");
}
