//! m365-conformance: runs any Microsoft 365 daemon client against m365-emulator and reports,
//! with evidence from the emulator's journal, what it does right and wrong.
//!
//! A client is any program that follows `conformance/CONTRACT.md`: it reads the standard
//! Azure SDK variables and a few `M365_*` ones, performs one operation, and writes JSON lines.
//! Each [`scenario::Scenario`] resets the emulator, sets it up (knobs, faults), runs the client,
//! and checks both the client's output and what it actually sent (the journal).

pub mod report;
pub mod runner;
pub mod scenario;
pub mod scenarios;
pub mod target;
pub mod webhook;

use std::collections::BTreeSet;

/// Reads an expected-failures file: one scenario id per line; `#` starts a comment.
pub fn parse_expected_failures(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_failures_file() {
        let set = parse_expected_failures(
            "# naive client\nMGMT-PAGE-001  # ignores NextPageUri\n\n  ENTRA-CACHE-001\n",
        );
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            ["ENTRA-CACHE-001", "MGMT-PAGE-001"]
        );
    }

    #[test]
    fn scenario_ids_are_unique_and_well_formed() {
        let all = scenarios::all();
        let ids: BTreeSet<&str> = all.iter().map(|s| s.id).collect();
        assert_eq!(ids.len(), all.len());
        for s in &all {
            let parts: Vec<&str> = s.id.split('-').collect();
            assert_eq!(parts.len(), 3, "{}", s.id);
            assert!(
                parts[2].len() == 3 && parts[2].bytes().all(|b| b.is_ascii_digit()),
                "{}",
                s.id
            );
            assert!(["entra", "management", "acs", "graph"].contains(&s.suite));
            assert!(!s.title.is_empty() && !s.requirement.is_empty());
        }
    }
}
