//! Reports: the terminal table, JUnit XML (one test case per scenario) and JSON.

use std::fmt::Write as _;

use serde_json::json;

use crate::scenario::{Outcome, ScenarioResult};

/// One progress line, printed as each scenario finishes.
pub fn progress_line(r: &ScenarioResult) -> String {
    let expected = if r.expected_failure {
        " (expected failure)"
    } else {
        ""
    };
    format!(
        "{:<8} {:<20} {:>6.1}s  {}{expected}",
        r.outcome.as_str(),
        r.id,
        r.seconds,
        r.title
    )
}

/// The summary table: counts, then every scenario that did not pass with its failing checks.
pub fn table(results: &[ScenarioResult]) -> String {
    let mut out = String::new();
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    let unexpected = results.iter().filter(|r| r.unexpected_failure()).count();
    let _ = writeln!(out, "\n{:<20} {:<8} TITLE", "SCENARIO", "OUTCOME");
    for r in results {
        let _ = writeln!(out, "{:<20} {:<8} {}", r.id, r.outcome.as_str(), r.title);
        if let Some(e) = &r.error {
            let _ = writeln!(out, "    error: {e}");
        }
        // What went wrong, and why a skipped scenario was not judged.
        let shown = |c: &&crate::scenario::Check| {
            c.outcome >= Outcome::Warning || r.outcome == Outcome::Skipped
        };
        for c in r.checks.iter().filter(shown) {
            let _ = writeln!(out, "    {} {}: {}", c.outcome.as_str(), c.rule, c.detail);
            for e in c.evidence.iter().take(3) {
                let _ = writeln!(out, "        {e}");
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{} scenarios: {} passed, {} warnings, {} failed ({} unexpected), {} skipped",
        results.len(),
        count(Outcome::Passed),
        count(Outcome::Warning),
        count(Outcome::Failed),
        unexpected,
        count(Outcome::Skipped)
    );
    out
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: a `<testsuite>` per service suite, a `<testcase>` per scenario; FAILED →
/// `<failure>` (unless expected: then `<skipped message="expected failure">`), SKIPPED →
/// `<skipped>`, WARNING passes with the warnings in `<system-out>`.
pub fn junit(results: &[ScenarioResult]) -> String {
    let mut suites: Vec<&str> = results.iter().map(|r| r.suite.as_str()).collect();
    suites.sort_unstable();
    suites.dedup();
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"m365-conformance\">\n",
    );
    for suite in suites {
        let in_suite: Vec<&ScenarioResult> = results.iter().filter(|r| r.suite == suite).collect();
        let failures = in_suite.iter().filter(|r| r.unexpected_failure()).count();
        let skipped = in_suite
            .iter()
            .filter(|r| {
                r.outcome == Outcome::Skipped
                    || (r.outcome == Outcome::Failed && r.expected_failure)
            })
            .count();
        let time: f64 = in_suite.iter().map(|r| r.seconds).sum();
        let _ = writeln!(out, "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{time:.3}\">", in_suite.len());
        for r in in_suite {
            let details: String = r
                .checks
                .iter()
                .map(|c| {
                    let ev: String = c.evidence.iter().map(|e| format!("\n    {e}")).collect();
                    format!("{} {}: {}{ev}\n", c.outcome.as_str(), c.rule, c.detail)
                })
                .collect();
            let _ = write!(
                out,
                "    <testcase classname=\"{suite}\" name=\"{} {}\" time=\"{:.3}\">",
                r.id,
                xml_escape(&r.title),
                r.seconds
            );
            let failing: Vec<String> = r
                .checks
                .iter()
                .filter(|c| c.outcome == Outcome::Failed)
                .map(|c| c.rule.clone())
                .chain(r.error.clone())
                .collect();
            match r.outcome {
                Outcome::Failed if r.expected_failure => {
                    let _ = write!(
                        out,
                        "<skipped message=\"expected failure: {}\"/>",
                        xml_escape(&failing.join("; "))
                    );
                }
                Outcome::Failed => {
                    let _ = write!(
                        out,
                        "<failure message=\"{}\">{}</failure>",
                        xml_escape(&failing.join("; ")),
                        xml_escape(&details)
                    );
                }
                Outcome::Skipped => {
                    let _ = write!(out, "<skipped message=\"{}\"/>", xml_escape(&details));
                }
                _ => {}
            }
            let _ = writeln!(
                out,
                "<system-out>{}requirement: {}</system-out></testcase>",
                xml_escape(&details),
                xml_escape(&r.requirement)
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// The machine-readable report.
pub fn json(results: &[ScenarioResult], client: &str) -> serde_json::Value {
    json!({
        "format": "m365-conformance/1",
        "client": client,
        "unexpected_failures": results.iter().filter(|r| r.unexpected_failure()).count(),
        "scenarios": results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Check;

    fn result(id: &str, suite: &str, checks: Vec<Check>, expected: bool) -> ScenarioResult {
        ScenarioResult {
            id: id.into(),
            title: format!("{id} <title> & more"),
            requirement: "https://learn.microsoft.com/x".into(),
            suite: suite.into(),
            outcome: checks
                .iter()
                .map(|c| c.outcome)
                .max()
                .unwrap_or(Outcome::Passed),
            expected_failure: expected,
            seconds: 1.25,
            checks,
            error: None,
        }
    }

    fn sample() -> Vec<ScenarioResult> {
        let failed = Check::new("the rule \"quoted\"", false, "1 < 2")
            .with_evidence(["#3 POST /token → 400 AADSTS7000215".to_string()]);
        vec![
            result(
                "ENTRA-A-001",
                "entra",
                vec![Check::new("ok", true, "fine")],
                false,
            ),
            result("ENTRA-A-002", "entra", vec![failed.clone()], false),
            result("MGMT-A-001", "management", vec![failed], true),
            result(
                "MGMT-A-002",
                "management",
                vec![Check::advice("short-lived", true, "3600 s")],
                false,
            ),
            result(
                "ACS-A-001",
                "acs",
                vec![Check::skipped("supports `acs-request`", "not declared")],
                false,
            ),
        ]
    }

    #[test]
    fn junit_report() {
        insta::assert_snapshot!(junit(&sample()));
    }

    #[test]
    fn terminal_table() {
        insta::assert_snapshot!(table(&sample()));
    }

    #[test]
    fn json_report() {
        insta::assert_json_snapshot!(json(&sample(), "my-client"));
    }
}
