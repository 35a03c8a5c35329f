//! Every scenario is shown to fail against a client that violates its rule (the naive client,
//! in each variant the scenario names in its `mutants`, with the named check FAILED), every
//! check the suite makes is shown to fail (or warn, for advice) in at least one of those runs,
//! and the reference clients pass every scenario they support. Scenarios run on several in-process
//! emulators at once. The Python clients run on the test virtualenv's Python
//! (M365EMU_TEST_PYTHON, set by scripts/test.sh).

mod common;
use common::python;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use m365_conformance::runner::{client_operations, run_jobs, Job};
use m365_conformance::scenario::Outcome;
use m365_conformance::scenarios;
use m365_conformance::target::Target;

/// In-process emulators the jobs are spread over.
const EMULATORS: usize = 3;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn targets() -> Vec<Arc<Target>> {
    let mut v = Vec::new();
    for _ in 0..EMULATORS {
        v.push(Arc::new(Target::in_process().await.expect("emulator")));
    }
    v
}

async fn job(client: String, scenario: scenarios::Scenario) -> Job {
    let ops = client_operations(&client, None)
        .await
        .unwrap_or_else(|e| panic!("{client} describes itself: {e:#}"));
    Job {
        client,
        scenario,
        operations: Arc::new(ops),
        expected: Arc::new(BTreeSet::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_fails_for_a_client_that_breaks_its_rule_and_passes_for_the_reference() {
    let Some(python) = python() else { return };
    let all = scenarios::all();
    let naive = workspace().join("conformance/clients/naive/naive.py");

    // Every scenario names at least one naive variant that must fail it.
    let mut mutant_jobs = Vec::new();
    let mut expectations = Vec::new();
    for s in &all {
        assert!(!s.mutants.is_empty(), "{} needs a mutant", s.id);
        for m in s.mutants {
            let client = format!("{python} {} {}", naive.display(), m.flags);
            mutant_jobs.push(job(client, *s).await);
            expectations.push((s.id, m.flags, m.failing_rule));
        }
    }
    // The reference clients pass every scenario they support (the Rust one supports all).
    let reference = env!("CARGO_BIN_EXE_m365-reference-client").to_string();
    let python_reference = format!(
        "{python} {}",
        workspace()
            .join("conformance/clients/python/m365_reference_client.py")
            .display()
    );
    let mut reference_jobs = Vec::new();
    for s in &all {
        reference_jobs.push(job(reference.clone(), *s).await);
        reference_jobs.push(job(python_reference.clone(), *s).await);
    }
    let rust_ops = reference_jobs[0].operations.clone();
    for s in &all {
        assert!(
            rust_ops.contains(s.operation),
            "the Rust reference client must support `{}` ({})",
            s.operation,
            s.id
        );
    }

    let n_mutants = mutant_jobs.len();
    let mut jobs = mutant_jobs;
    jobs.extend(reference_jobs);
    let results = run_jobs(targets().await, jobs.clone(), |r| {
        eprintln!("{} {} {:.1}s", r.id, r.outcome.as_str(), r.seconds)
    })
    .await;

    let mut problems = Vec::new();
    for (r, (id, flags, rule)) in results[..n_mutants].iter().zip(&expectations) {
        let caught = r
            .checks
            .iter()
            .any(|c| c.outcome == Outcome::Failed && c.rule.contains(rule));
        if r.outcome != Outcome::Failed || !caught || r.error.is_some() {
            problems.push(format!(
                "{id} should fail for `naive.py {flags}` with a FAILED check “{rule}”: {r:#?}"
            ));
        }
    }
    // No check that cannot fail: every rule a reference client was judged by is FAILED (or a
    // WARNING, for advice) in some naive run.
    let caught: BTreeSet<&str> = results[..n_mutants]
        .iter()
        .flat_map(|r| &r.checks)
        .filter(|c| c.outcome >= Outcome::Warning)
        .map(|c| c.rule.as_str())
        .collect();
    let mut judged: BTreeMap<&str, &str> = BTreeMap::new();
    for r in &results[n_mutants..] {
        for c in r.checks.iter().filter(|c| c.outcome == Outcome::Passed) {
            judged.entry(c.rule.as_str()).or_insert(r.id.as_str());
        }
    }
    for (rule, id) in &judged {
        if !caught.contains(rule) {
            problems.push(format!(
                "the check “{rule}” ({id}) is never shown to fail: no naive variant breaks it"
            ));
        }
    }
    for (r, j) in results[n_mutants..].iter().zip(&jobs[n_mutants..]) {
        let supported = j.operations.contains(j.scenario.operation);
        let want = if supported {
            Outcome::Passed
        } else {
            Outcome::Skipped
        };
        if r.outcome != want {
            problems.push(format!(
                "{} should be {} for `{}`: {r:#?}",
                r.id,
                want.as_str(),
                j.client
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
