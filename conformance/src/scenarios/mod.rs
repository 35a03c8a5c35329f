//! Every scenario, one file per service.

pub use crate::scenario::Scenario;

pub mod acs;
pub mod entra;
pub mod graph;
pub mod management;

/// Wraps an `async fn(&Ctx) -> Result<Vec<Check>>` as a scenario's `run`, with the naive
/// variants that must fail it: `mutants: [("--flags", "words of the failing rule"), …]`.
#[macro_export]
macro_rules! scenario {
    ($id:literal, $suite:literal, $op:literal, $title:literal, $req:literal, $f:ident,
     mutants: [$(($flags:literal, $rule:literal)),+ $(,)?]) => {
        $crate::scenario::Scenario {
            id: $id,
            suite: $suite,
            operation: $op,
            title: $title,
            requirement: $req,
            run: |ctx| Box::pin($f(ctx)),
            mutants: &[$($crate::scenario::Mutant { flags: $flags, failing_rule: $rule }),+],
        }
    };
}

/// All scenarios, in a stable order.
pub fn all() -> Vec<Scenario> {
    let mut v = entra::scenarios();
    v.extend(management::scenarios());
    v.extend(graph::scenarios());
    v.extend(acs::scenarios());
    v
}

/// The rule every scenario with a transient failure applies to the gaps between attempts
/// (seconds): a backoff, not a hot loop.
pub fn waits_before_each_retry(waits: &[f64], evidence: Vec<String>) -> crate::scenario::Check {
    crate::scenario::Check::new(
        "the client waits before each retry (at least 100 ms: a backoff, not a loop)",
        !waits.is_empty() && waits.iter().all(|w| *w >= 0.1),
        format!("waits between attempts: {waits:.2?} s"),
    )
    .with_evidence(evidence)
}

/// The rule for a persistent failure: at most `MAX_ATTEMPTS_ON_PERSISTENT_FAILURE` attempts.
pub fn bounded_attempts(attempts: usize, evidence: Vec<String>) -> crate::scenario::Check {
    crate::scenario::Check::new(
        "a bounded number of attempts (at most 6), then the client stops",
        (1..=MAX_ATTEMPTS_ON_PERSISTENT_FAILURE).contains(&attempts),
        format!("{attempts} attempts"),
    )
    .with_evidence(evidence)
}

/// What a client may spend on a request that keeps failing (the reference clients: 5).
pub const MAX_ATTEMPTS_ON_PERSISTENT_FAILURE: usize = 6;

/// Seconds between consecutive journal entries.
pub fn gaps(entries: &[&serde_json::Value]) -> Vec<f64> {
    entries
        .windows(2)
        .map(|w| time_of(w[1]) - time_of(w[0]))
        .collect()
}

/// Journal entries of one operation.
pub fn of_operation<'j>(journal: &'j [serde_json::Value], op: &str) -> Vec<&'j serde_json::Value> {
    journal.iter().filter(|e| e["operation"] == op).collect()
}

/// Journal times in seconds since the Unix epoch (fractional).
pub fn time_of(entry: &serde_json::Value) -> f64 {
    entry["time"]
        .as_str()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(0.0, |t| t.unix_timestamp_nanos() as f64 / 1e9)
}
