//! Every check is shown to fail against a client that violates it (the naive client, in the
//! variant that breaks that scenario's rule), and the reference client passes every scenario.
//! The naive client runs on the test virtualenv's Python (M365EMU_TEST_PYTHON, set by
//! scripts/test.sh).

use std::collections::BTreeSet;
use std::path::PathBuf;

use m365_conformance::runner::{client_operations, run_scenario};
use m365_conformance::scenario::Outcome;
use m365_conformance::scenarios;
use m365_conformance::target::Target;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The reference client's adapter binary (a binary of this crate).
fn reference_client() -> String {
    env!("CARGO_BIN_EXE_m365-reference-client").to_string()
}

fn python() -> Option<String> {
    match std::env::var("M365EMU_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var("M365EMU_SKIP_CLIENT_TESTS").as_deref() == Ok("1") => None,
        _ => panic!("M365EMU_TEST_PYTHON is not set: run the tests with scripts/test.sh"),
    }
}

/// Which naive variant breaks each scenario's rule, and words of the rule that must fail.
const MUTANTS: &[(&str, &str, &str)] = &[
    ("ENTRA-SECRET-001", "--bad-scope", "succeeded"),
    ("ENTRA-CERT-001", "", "aud is exactly the token endpoint"),
    ("ENTRA-CACHE-001", "", "one token request serves all three"),
    ("ENTRA-ERROR-001", "", "non-zero exit"),
    ("ENTRA-THROTTLE-001", "", "Retry-After"),
    ("MGMT-SUB-001", "", "starts the missing subscription"),
    (
        "MGMT-SUB-002",
        "--start-always",
        "after AF20024 the client goes on",
    ),
    (
        "MGMT-SUB-003",
        "",
        "instead of reporting an empty audit log",
    ),
    ("MGMT-PAGE-001", "--start-always", "NextPageUri names"),
    ("MGMT-WINDOW-001", "--start-always", "at most 24 hours"),
    (
        "MGMT-BLOB-001",
        "--start-always --double-fetch",
        "fetched once",
    ),
    ("MGMT-LATE-001", "", "record"),
    ("MGMT-THROTTLE-001", "--start-always", "Retry-After"),
    (
        "MGMT-RETRY-001",
        "--start-always",
        "retries the listing until it succeeds",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_fails_for_a_client_that_breaks_its_rule_and_passes_for_the_reference() {
    let Some(python) = python() else { return };
    let all = scenarios::all();
    let ids: BTreeSet<&str> = all.iter().map(|s| s.id).collect();
    let mutated: BTreeSet<&str> = MUTANTS.iter().map(|m| m.0).collect();
    assert_eq!(ids, mutated, "every scenario needs a mutant");

    let target = Target::in_process().await.expect("emulator");
    let none = BTreeSet::new();
    let naive = workspace().join("conformance/clients/naive/naive.py");
    for (id, flags, rule) in MUTANTS {
        let s = all.iter().find(|s| s.id == *id).expect("scenario");
        let client = format!("{python} {} {flags}", naive.display());
        let ops = client_operations(&client, None)
            .await
            .expect("naive describes itself");
        let r = run_scenario(&target, &client, s, &ops, &none).await;
        assert_eq!(
            r.outcome,
            Outcome::Failed,
            "{id} should fail for `naive.py {flags}`: {r:#?}"
        );
        assert!(
            r.checks
                .iter()
                .any(|c| c.outcome == Outcome::Failed && c.rule.contains(rule)),
            "{id}: the failing checks should include “{rule}”: {:#?}",
            r.checks
        );
        assert!(r.error.is_none(), "{id}: {:?}", r.error);
    }

    let reference = reference_client();
    let ops = client_operations(&reference, None).await.expect("describe");
    for s in &all {
        let r = run_scenario(&target, &reference, s, &ops, &none).await;
        assert_eq!(
            r.outcome,
            Outcome::Passed,
            "{} should pass for the reference client: {r:#?}",
            s.id
        );
    }
}
