//! What a scenario is, what a check concludes, and the evidence behind it.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::Value;

use crate::runner::Ctx;

/// A check's (and a scenario's) conclusion. Order matters: the worst check decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Skipped,
    Passed,
    Warning,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Skipped => "SKIPPED",
            Outcome::Passed => "PASSED",
            Outcome::Warning => "WARNING",
            Outcome::Failed => "FAILED",
        }
    }
}

/// One rule applied to what the client did.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The rule, stated as what a correct client does.
    pub rule: String,
    pub outcome: Outcome,
    /// Why: what was observed.
    pub detail: String,
    /// Journal entries (summarised) and client output lines the conclusion rests on.
    pub evidence: Vec<String>,
}

impl Check {
    pub fn new(rule: impl Into<String>, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            rule: rule.into(),
            outcome: if ok { Outcome::Passed } else { Outcome::Failed },
            detail: detail.into(),
            evidence: Vec::new(),
        }
    }

    /// Legal but unwise when `unwise`.
    pub fn advice(rule: impl Into<String>, unwise: bool, detail: impl Into<String>) -> Check {
        Check {
            outcome: if unwise {
                Outcome::Warning
            } else {
                Outcome::Passed
            },
            ..Check::new(rule, true, detail)
        }
    }

    /// Not judged: the run cannot carry the check out (`detail` says why).
    pub fn skipped(rule: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            outcome: Outcome::Skipped,
            ..Check::new(rule, true, detail)
        }
    }

    pub fn with_evidence(mut self, evidence: impl IntoIterator<Item = String>) -> Check {
        self.evidence.extend(evidence);
        self
    }
}

pub type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Vec<Check>>> + Send + 'a>>;

/// A scenario: setup, one or more client runs, checks on the client's output and the journal.
#[derive(Clone, Copy)]
pub struct Scenario {
    /// Stable id, e.g. `ENTRA-CERT-001`.
    pub id: &'static str,
    pub title: &'static str,
    /// The documentation or reference section the checks enforce.
    pub requirement: &'static str,
    /// `entra`, `management`, `acs` or `graph`.
    pub suite: &'static str,
    /// The contract operation the client must support (else SKIPPED).
    pub operation: &'static str,
    pub run: for<'a> fn(&'a Ctx) -> ScenarioFuture<'a>,
    /// How the scenario is shown to fail: naive-client variants (flags to
    /// conformance/clients/naive/naive.py) that break its rule, each with words of the check
    /// that must then be FAILED (conformance/tests/mutation.rs runs them all).
    pub mutants: &'static [Mutant],
}

/// A naive-client variant that breaks a scenario's rule, and the check that catches it.
#[derive(Debug, Clone, Copy)]
pub struct Mutant {
    /// Command-line flags of naive.py (empty: the default naive client).
    pub flags: &'static str,
    /// Words of the rule of a check that must be FAILED.
    pub failing_rule: &'static str,
}

/// A scenario's result, as the reports show it.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub id: String,
    pub title: String,
    pub requirement: String,
    pub suite: String,
    pub outcome: Outcome,
    /// The id is in the expected-failures file (a FAILED outcome is then not a failure of
    /// the run).
    pub expected_failure: bool,
    pub seconds: f64,
    pub checks: Vec<Check>,
    /// Set when the scenario could not be carried out (setup or harness error).
    pub error: Option<String>,
}

impl ScenarioResult {
    /// FAILED and not expected.
    pub fn unexpected_failure(&self) -> bool {
        self.outcome == Outcome::Failed && !self.expected_failure
    }
}

/// A journal entry in one line: `#id METHOD path?query → status code`.
pub fn summarize(entry: &Value) -> String {
    let q = entry["query"]
        .as_str()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    // A status-only fault journals its status as the code: shown once.
    let status = entry["status"].to_string();
    let code = entry["error_code"]
        .as_str()
        .filter(|c| *c != status)
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    let fault = entry["fault"]
        .as_str()
        .map(|f| format!(" (fault {f})"))
        .unwrap_or_default();
    format!(
        "#{} {} {} {}{} → {}{}{}",
        entry["id"],
        entry["time"].as_str().unwrap_or_default(),
        entry["method"].as_str().unwrap_or_default(),
        entry["path"].as_str().unwrap_or_default(),
        q,
        entry["status"],
        code,
        fault
    )
}
