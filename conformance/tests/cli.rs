//! The `m365-conformance` command line as users run it: listing, argument errors (exit 2),
//! reports written, and the exit status with and without an expected-failures file.

mod common;
use common::python;

use std::path::PathBuf;
use std::process::{Command, Output};

fn conformance(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_m365-conformance"))
        .args(args)
        .output()
        .expect("m365-conformance runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn list_names_every_scenario_once() {
    let out = conformance(&["list"]);
    assert!(out.status.success());
    let ids: Vec<String> = text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| {
            w.matches('-').count() == 2
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
        })
        .map(str::to_string)
        .collect();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "{ids:?}");
    assert_eq!(ids.len(), m365_conformance::scenarios::all().len());
    let md = text(&conformance(&["list", "--markdown"]).stdout);
    assert!(md.starts_with("| id | operation | title | requirement |\n|---|---|---|---|\n"));
    assert_eq!(md.lines().count(), ids.len() + 2);
}

#[test]
fn bad_arguments_exit_2_and_say_what_is_wrong() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["run", "--client", "true", "--suite", "mgmt"],
            "no suite \"mgmt\"",
        ),
        (
            &["run", "--client", "true", "--scenario", "NOPE-X-001"],
            "no scenario NOPE-X-001",
        ),
        (
            &["run", "--client", "true", "--report", "xml=out.xml"],
            "the formats are junit and json",
        ),
        (
            &["run", "--scenario", "ENTRA-SECRET-001"],
            "--client is required",
        ),
    ];
    for (args, says) in cases {
        let out = conformance(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_run_writes_its_reports_and_exits_by_its_unexpected_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junit = dir.path().join("r.xml");
    let json = dir.path().join("r.json");
    let reference = env!("CARGO_BIN_EXE_m365-reference-client");
    let out = conformance(&[
        "run",
        "--client",
        reference,
        "--scenario",
        "ENTRA-SECRET-001",
        "ENTRA-CACHE-001",
        "--report",
        &format!("junit={}", junit.display()),
        "--report",
        &format!("json={}", json.display()),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("2 scenarios: 2 passed"));
    let xml = std::fs::read_to_string(&junit).expect("junit report");
    assert!(xml.contains("name=\"ENTRA-SECRET-001 ") && !xml.contains("<failure"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json report")).expect("JSON");
    assert_eq!(report["format"], "m365-conformance/1");
    assert_eq!(report["scenarios"].as_array().map(Vec::len), Some(2));

    // The naive client swallows the error: FAILED, and the run fails unless it is expected.
    let Some(python) = python() else { return };
    let naive = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/naive/naive.py");
    let client = format!("{python} {}", naive.display());
    let args = ["run", "--client", &client, "--scenario", "ENTRA-ERROR-001"];
    let failing = conformance(&args);
    assert_eq!(failing.status.code(), Some(1), "{}", text(&failing.stderr));
    assert!(text(&failing.stdout).contains("FAILED"));
    let expected = dir.path().join("expected.txt");
    std::fs::write(&expected, "# known gap\nENTRA-ERROR-001\n").expect("write");
    let expected_arg = expected.display().to_string();
    let mut with_file = args.to_vec();
    with_file.extend(["--expected-failures", &expected_arg]);
    let tolerated = conformance(&with_file);
    assert!(tolerated.status.success(), "{}", text(&tolerated.stderr));
    assert!(text(&tolerated.stderr).contains("(expected failure)"));
}

/// conformance/SCENARIOS.md is `m365-conformance list --markdown` under a heading: regenerate
/// it with `scripts/scenarios-md.sh` when a scenario is added or renamed.
#[test]
fn scenarios_md_is_current() {
    let listed = text(&conformance(&["list", "--markdown"]).stdout);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("SCENARIOS.md");
    let committed = std::fs::read_to_string(&path).expect("conformance/SCENARIOS.md");
    assert!(
        committed.ends_with(&listed),
        "conformance/SCENARIOS.md is stale: run scripts/scenarios-md.sh"
    );
}
