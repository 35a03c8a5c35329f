//! Report math: latency percentiles (nearest rank) and the run's report document.

use serde::{Deserialize, Serialize};

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The nearest-rank percentile of sorted samples: the smallest value with at least `p`% of
/// the samples at or below it. `None` for no samples.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl Latency {
    /// Summarises per-request latencies given in microseconds (sorted in place).
    pub fn from_micros(samples: &mut [u64]) -> Latency {
        samples.sort_unstable();
        let ms = |p: f64| percentile(samples, p).map_or(0.0, |us| us as f64 / 1000.0);
        let mean_ms = if samples.is_empty() {
            0.0
        } else {
            samples.iter().map(|&us| us as f64).sum::<f64>() / samples.len() as f64 / 1000.0
        };
        Latency {
            p50_ms: ms(50.0),
            p90_ms: ms(90.0),
            p99_ms: ms(99.0),
            max_ms: ms(100.0),
            mean_ms,
        }
    }
}

/// What the server process cost during the measured run (from `/proc`), when its pid is known.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerCost {
    pub pid: u32,
    /// User + system CPU seconds spent during the measured run.
    pub cpu_seconds: f64,
    /// `cpu_seconds / elapsed`, in percent of one core.
    pub cpu_percent: f64,
    /// Resident set size when the measured run started.
    pub rss_start_kib: u64,
    /// The largest RSS sampled during the run (every 50 ms) and at its end.
    pub rss_peak_kib: u64,
    /// The kernel's high-water mark of the process's RSS over its whole life (`VmHWM`).
    pub vm_hwm_kib: u64,
}

/// One unexpected answer, kept as an example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorSample {
    pub what: String,
}

/// The report of one run of one scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// A free label for tables (e.g. `emulator` or `oauth2-mock-server`).
    pub label: String,
    pub scenario: String,
    pub target: String,
    pub connections: usize,
    /// Requests answered as expected.
    pub ok: u64,
    /// Requests that failed: transport errors and unexpected statuses or bodies.
    pub errors: u64,
    pub elapsed_seconds: f64,
    /// `ok / elapsed_seconds`.
    pub requests_per_second: f64,
    pub latency: Latency,
    pub server: Option<ServerCost>,
    /// Scenario extras, e.g. `records` and `records_per_second` for `management-drain`.
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub error_samples: Vec<ErrorSample>,
}

impl Report {
    /// One line for humans.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{label} {scenario} c={c}: {ok} ok, {err} errors in {t:.2} s = {rps:.1} req/s; \
             latency p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
            label = self.label,
            scenario = self.scenario,
            c = self.connections,
            ok = self.ok,
            err = self.errors,
            t = self.elapsed_seconds,
            rps = self.requests_per_second,
            p50 = self.latency.p50_ms,
            p90 = self.latency.p90_ms,
            p99 = self.latency.p99_ms,
            max = self.latency.max_ms,
        );
        if let Some(cost) = &self.server {
            s.push_str(&format!(
                "; server pid {}: CPU {:.0}% of a core, RSS {:.1} MiB at start, peak {:.1} MiB",
                cost.pid,
                cost.cpu_percent,
                cost.rss_start_kib as f64 / 1024.0,
                cost.rss_peak_kib as f64 / 1024.0
            ));
        }
        for (k, v) in &self.extra {
            s.push_str(&format!("; {k} {v}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(50));
        assert_eq!(percentile(&sorted, 90.0), Some(90));
        assert_eq!(percentile(&sorted, 99.0), Some(99));
        assert_eq!(percentile(&sorted, 99.5), Some(100));
        assert_eq!(percentile(&sorted, 100.0), Some(100));
        assert_eq!(percentile(&sorted, 0.0), Some(1));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 99.0), Some(7));
        // Ten samples: p90 is the 9th, p99 the 10th.
        let ten: Vec<u64> = (10..=100).step_by(10).collect();
        assert_eq!(percentile(&ten, 90.0), Some(90));
        assert_eq!(percentile(&ten, 99.0), Some(100));
        assert_eq!(percentile(&ten, 50.0), Some(50));
        assert_eq!(percentile(&ten, 51.0), Some(60));
    }

    #[test]
    fn latency_summary_in_milliseconds() {
        let mut micros = vec![3000, 1000, 2000, 4000];
        let l = Latency::from_micros(&mut micros);
        assert_eq!(micros, vec![1000, 2000, 3000, 4000], "sorted in place");
        assert_eq!(l.p50_ms, 2.0);
        assert_eq!(l.p90_ms, 4.0);
        assert_eq!(l.max_ms, 4.0);
        assert_eq!(l.mean_ms, 2.5);
        assert_eq!(Latency::from_micros(&mut []), Latency::default());
    }

    #[test]
    fn report_round_trips_through_json() {
        let mut r = Report {
            label: "emulator".into(),
            scenario: "token-secret".into(),
            ok: 10,
            ..Default::default()
        };
        r.extra.insert("records".into(), 5.into());
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(r.summary().contains("10 ok"));
    }
}
