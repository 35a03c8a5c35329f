//! Every scenario, one file per service.

pub use crate::scenario::Scenario;

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
    v
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
