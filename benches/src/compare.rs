//! The comparison of one benchmark run: reads the `m365-load run --json` reports and the
//! `openssl speed` figures measured in the same run, prints one Markdown table with the
//! ratios (the headline), writes all results as one JSON document and draws a PNG chart.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use crate::args::CompareArgs;
use crate::stats::Report;

/// The peer's label in report files.
pub const PEER: &str = "oauth2-mock-server";
/// The emulator's label.
pub const EMULATOR: &str = "emulator";
/// The emulator with 10,000 extra applications registered (scale runs).
pub const EMULATOR_10K: &str = "emulator-10k-apps";
/// The default world in the scale runs, taking turns with [`EMULATOR_10K`].
pub const EMULATOR_1APP: &str = "emulator-default-world";
/// The emulator with a 1M-records-a-day feed (management-drain runs).
pub const EMULATOR_1M: &str = "emulator-1m-per-day";

/// Reports keyed by label, scenario, connections (and days for management-drain).
#[derive(Debug, Default)]
pub struct Reports {
    pub all: Vec<Report>,
}

impl Reports {
    pub fn load(dir: &Path) -> anyhow::Result<Reports> {
        let mut all = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        entries.sort();
        for path in entries {
            let text = std::fs::read_to_string(&path)?;
            let report: Report = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a report", path.display()))?;
            all.push(report);
        }
        Ok(Reports { all })
    }

    pub fn find(&self, label: &str, scenario: &str, connections: usize) -> Option<&Report> {
        self.all
            .iter()
            .find(|r| r.label == label && r.scenario == scenario && r.connections == connections)
    }

    /// Requests per second over every matching run together (`Σ ok / Σ elapsed`).
    pub fn pooled_rps(&self, label: &str, scenario: &str, connections: usize) -> Option<f64> {
        let runs = self
            .all
            .iter()
            .filter(|r| r.label == label && r.scenario == scenario && r.connections == connections);
        let (ok, secs) = runs.fold((0u64, 0.0f64), |(ok, secs), r| {
            (ok + r.ok, secs + r.elapsed_seconds)
        });
        (secs > 0.0).then(|| ok as f64 / secs)
    }

    /// How many runs match.
    pub fn rounds(&self, label: &str, scenario: &str, connections: usize) -> usize {
        self.all
            .iter()
            .filter(|r| r.label == label && r.scenario == scenario && r.connections == connections)
            .count()
    }

    fn drain(&self, days: u64) -> Option<&Report> {
        self.all.iter().find(|r| {
            r.scenario == "management-drain"
                && r.extra.get("days").and_then(Value::as_u64) == Some(days)
        })
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_string(), |r| format!("**{r:.2} ×**"))
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn peak_mib(r: &Report) -> Option<f64> {
    r.server.as_ref().map(|s| mib(s.rss_peak_kib))
}

/// The concurrencies of the comparison.
pub const CONCURRENCIES: [usize; 3] = [1, 8, 64];

/// Builds the Markdown table and the results document.
pub fn table(reports: &Reports, args: &CompareArgs, facts: &Value) -> (String, Value) {
    let mut md = String::new();
    let single = args.openssl_single;
    let multi = args.openssl_multi;
    md.push_str(&format!(
        "RSA-2048 sign/s measured in this run: `openssl speed rsa2048` **{single:.0}** on one core, \
         `openssl speed -multi {}` **{multi:.0}** on all cores",
        args.cores
    ));
    match facts.get("openssl_turns").and_then(Value::as_str) {
        Some(turns) => md.push_str(&format!(
            " (means of the turns between the runs: {turns}).\n\n"
        )),
        None => md.push_str(".\n\n"),
    }

    md.push_str("| token-secret | emulator tokens/s | oauth2-mock-server tokens/s | ratio (target) | emulator p99 ms | peer p99 ms | p99 ratio (≤ 0.5) | emulator peak RSS MiB | peer peak RSS MiB | RSS ratio (≤ 0.6) | errors (emu/peer) |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut rows = Vec::new();
    for c in CONCURRENCIES {
        let emu = reports.find(EMULATOR, "token-secret", c);
        let peer = reports.find(PEER, "token-secret", c);
        let target = match c {
            1 => " (≥ 2.5)",
            64 => " (≥ 1.7)",
            _ => "",
        };
        let rps_ratio = emu
            .zip(peer)
            .and_then(|(e, p)| ratio(e.requests_per_second, p.requests_per_second));
        let p99_ratio = emu
            .zip(peer)
            .and_then(|(e, p)| ratio(e.latency.p99_ms, p.latency.p99_ms));
        let rss_ratio = emu
            .and_then(peak_mib)
            .zip(peer.and_then(peak_mib))
            .and_then(|(e, p)| ratio(e, p));
        md.push_str(&format!(
            "| c={c} | {} | {} | {}{target} | {} | {} | {} | {} | {} | {} | {}/{} |\n",
            fmt_opt(emu.map(|r| r.requests_per_second), 0),
            fmt_opt(peer.map(|r| r.requests_per_second), 0),
            fmt_ratio(rps_ratio),
            fmt_opt(emu.map(|r| r.latency.p99_ms), 2),
            fmt_opt(peer.map(|r| r.latency.p99_ms), 2),
            fmt_ratio(p99_ratio),
            fmt_opt(emu.and_then(peak_mib), 1),
            fmt_opt(peer.and_then(peak_mib), 1),
            fmt_ratio(rss_ratio),
            emu.map_or("–".into(), |r| r.errors.to_string()),
            peer.map_or("–".into(), |r| r.errors.to_string()),
        ));
        rows.push(json!({
            "connections": c,
            "emulator_rps": emu.map(|r| r.requests_per_second),
            "peer_rps": peer.map(|r| r.requests_per_second),
            "rps_ratio": rps_ratio,
            "p99_ratio": p99_ratio,
            "peak_rss_ratio": rss_ratio,
        }));
    }

    md.push_str("\n| token-certificate | emulator tokens/s | p50 ms | p99 ms | server CPU % of a core | ÷ openssl 1 core | ÷ openssl all cores (target ≥ 0.8 at c=64) |\n");
    md.push_str("|---|---|---|---|---|---|---|\n");
    let mut cert_rows = Vec::new();
    for c in CONCURRENCIES {
        let emu = reports.find(EMULATOR, "token-certificate", c);
        let rps = emu.map(|r| r.requests_per_second);
        md.push_str(&format!(
            "| c={c} | {} | {} | {} | {} | {} | {} |\n",
            fmt_opt(rps, 0),
            fmt_opt(emu.map(|r| r.latency.p50_ms), 2),
            fmt_opt(emu.map(|r| r.latency.p99_ms), 2),
            fmt_opt(
                emu.and_then(|r| r.server.as_ref().map(|s| s.cpu_percent)),
                0
            ),
            fmt_ratio(rps.and_then(|r| ratio(r, single))),
            fmt_ratio(rps.and_then(|r| ratio(r, multi))),
        ));
        cert_rows.push(json!({
            "connections": c,
            "emulator_rps": rps,
            "ratio_to_openssl_single": rps.and_then(|r| ratio(r, single)),
            "ratio_to_openssl_multi": rps.and_then(|r| ratio(r, multi)),
        }));
    }

    md.push_str("\n| scale | figure | reference | ratio (target) |\n|---|---|---|---|\n");
    // Both worlds take turns in the same minute, so a drift in the machine's speed hits both.
    let one = reports.pooled_rps(EMULATOR_1APP, "token-certificate", 8);
    let many = reports.pooled_rps(EMULATOR_10K, "token-certificate", 8);
    let scale_ratio = one.zip(many).and_then(|(o, m)| ratio(m, o));
    md.push_str(&format!(
        "| token-certificate c=8, 10,000 apps vs default world ({} alternating rounds each) | {} tokens/s | {} tokens/s | {} (≥ 0.95) |\n",
        reports.rounds(EMULATOR_10K, "token-certificate", 8),
        fmt_opt(many, 0),
        fmt_opt(one, 0),
        fmt_ratio(scale_ratio)
    ));
    let d1 = reports.drain(1);
    let d7 = reports.drain(7);
    let rec = |r: Option<&Report>, k: &str| r.and_then(|r| r.extra.get(k)).and_then(Value::as_f64);
    md.push_str(&format!(
        "| management-drain, 7 days vs 1 day at 1M records/day: p50 request ms | {} | {} | {} (≈ 1) |\n",
        fmt_opt(d7.map(|r| r.latency.p50_ms), 2),
        fmt_opt(d1.map(|r| r.latency.p50_ms), 2),
        fmt_ratio(d7.zip(d1).and_then(|(a, b)| ratio(a.latency.p50_ms, b.latency.p50_ms)))
    ));
    md.push_str(&format!(
        "| management-drain, 7 days vs 1 day: peak RSS MiB | {} | {} | {} (≈ 1) |\n",
        fmt_opt(d7.and_then(peak_mib), 1),
        fmt_opt(d1.and_then(peak_mib), 1),
        fmt_ratio(
            d7.and_then(peak_mib)
                .zip(d1.and_then(peak_mib))
                .and_then(|(a, b)| ratio(a, b))
        )
    ));
    for (days, r) in [(1, d1), (7, d7)] {
        md.push_str(&format!(
            "| blobs served, {days} day(s): records/s vs plain serde_json of the same records | {} | {} | {} |\n",
            fmt_opt(rec(r, "records_per_second"), 0),
            fmt_opt(rec(r, "plain_serde_json_records_per_second"), 0),
            fmt_ratio(rec(r, "ratio_to_plain_serde_json"))
        ));
    }
    let fact = |k: &str| facts.get(k).and_then(Value::as_f64);
    md.push_str(&format!(
        "| start-up to the ready file: cold (new state dir) / warm, ms | {} / {} | ≤ 1500 / ≤ 150 | |\n",
        fmt_opt(fact("cold_start_ms"), 0),
        fmt_opt(fact("warm_start_ms"), 0),
    ));
    md.push_str(&format!(
        "| idle RSS MiB (emulator / oauth2-mock-server) | {} | {} | {} (≤ 30 MB) |\n",
        fmt_opt(fact("idle_rss_kib").map(|k| k / 1024.0), 1),
        fmt_opt(fact("peer_idle_rss_kib").map(|k| k / 1024.0), 1),
        fmt_ratio(
            fact("idle_rss_kib")
                .zip(fact("peer_idle_rss_kib"))
                .and_then(|(a, b)| ratio(a, b))
        )
    ));
    if let Some(acs) = reports.all.iter().find(|r| r.scenario == "acs-hmac") {
        md.push_str(&format!(
            "| acs-hmac (create identity) c={} | {:.0} req/s, p99 {:.2} ms | | |\n",
            acs.connections, acs.requests_per_second, acs.latency.p99_ms
        ));
    } else if let Some(note) = facts.get("acs_hmac").and_then(Value::as_str) {
        md.push_str(&format!("| acs-hmac (create identity) | {note} | | |\n"));
    }

    let doc = json!({
        "openssl": {"sign_per_second_single": single, "sign_per_second_multi": multi, "cores": args.cores},
        "token_secret": rows,
        "token_certificate": cert_rows,
        "scale_10k_apps_ratio": scale_ratio,
        "facts": facts,
        "reports": reports.all,
    });
    (md, doc)
}

/// Font files tried for the chart's text, in order (Debian's DejaVu and Liberation).
const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Draws tokens/s per concurrency (emulator secret, emulator certificate, peer secret) with
/// the openssl ceilings as lines. Needs one TTF font on the machine (no fontconfig).
pub fn chart(reports: &Reports, args: &CompareArgs, out: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let font = FONT_CANDIDATES
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .context("no TTF font found for the chart (apt-get install fonts-dejavu-core)")?;
    // register_font wants 'static bytes; the chart is drawn once per process.
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("the font file is not a usable TTF"))?;

    let series: [(&str, &str, &str, RGBColor); 3] = [
        (
            EMULATOR,
            "token-secret",
            "emulator, client secret",
            RGBColor(31, 119, 180),
        ),
        (
            EMULATOR,
            "token-certificate",
            "emulator, certificate assertion",
            RGBColor(44, 160, 44),
        ),
        (
            PEER,
            "token-secret",
            "oauth2-mock-server, client secret",
            RGBColor(214, 39, 40),
        ),
    ];
    let mut top = args.openssl_multi.max(args.openssl_single);
    for (label, scenario, _, _) in &series {
        for c in CONCURRENCIES {
            if let Some(r) = reports.find(label, scenario, c) {
                top = top.max(r.requests_per_second);
            }
        }
    }
    let top = top * 1.15;

    let root = BitMapBackend::new(out, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Tokens per second over loopback HTTPS (higher is better)",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..3f64, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        // Ticks every 0.5; only the bar groups' centres (0.5, 1.5, 2.5) get a name.
        .x_labels(7)
        .x_label_formatter(&|x| {
            let i = x - 0.5;
            if (i - i.round()).abs() > 0.01 || i < -0.01 {
                return String::new();
            }
            CONCURRENCIES
                .get(i.round() as usize)
                .map_or(String::new(), |c| format!("{c} connection(s)"))
        })
        .y_desc("tokens/s")
        .label_style(("sans-serif", 16))
        .draw()?;
    let width = 0.8 / series.len() as f64;
    for (k, (label, scenario, name, color)) in series.iter().enumerate() {
        let bars: Vec<_> = CONCURRENCIES
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let r = reports.find(label, scenario, *c)?;
                let x0 = i as f64 + 0.1 + k as f64 * width;
                Some(Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.95, r.requests_per_second)],
                    color.filled(),
                ))
            })
            .collect();
        let color = *color;
        chart
            .draw_series(bars)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    for (value, name, color) in [
        (
            args.openssl_single,
            format!(
                "openssl rsa2048 sign/s, 1 core ({:.0})",
                args.openssl_single
            ),
            BLACK,
        ),
        (
            args.openssl_multi,
            format!(
                "openssl rsa2048 sign/s, -multi {} ({:.0})",
                args.cores, args.openssl_multi
            ),
            RGBColor(120, 120, 120),
        ),
    ] {
        chart
            .draw_series(LineSeries::new(
                [(0.0, value), (3.0, value)],
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}

/// `m365-load compare`.
pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    let reports = Reports::load(&args.reports)?;
    let facts: Value = match &args.facts {
        Some(p) => serde_json::from_str(&std::fs::read_to_string(p)?)
            .with_context(|| format!("{} is not JSON", p.display()))?,
        None => json!({}),
    };
    let (md, doc) = table(&reports, args, &facts);
    println!("{md}");
    if let Some(p) = &args.out_table {
        std::fs::write(p, &md)?;
    }
    std::fs::write(&args.out_json, serde_json::to_vec_pretty(&doc)?)?;
    match chart(&reports, args, &args.out_png) {
        Ok(()) => eprintln!("chart: {}", args.out_png.display()),
        Err(e) => eprintln!("chart not drawn: {e:#}"),
    }
    Ok(())
}

/// Groups reports for callers that want every figure of one label.
pub fn by_label(reports: &Reports) -> BTreeMap<&str, Vec<&Report>> {
    let mut map: BTreeMap<&str, Vec<&Report>> = BTreeMap::new();
    for r in &reports.all {
        map.entry(r.label.as_str()).or_default().push(r);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Latency, ServerCost};

    fn report(label: &str, scenario: &str, c: usize, rps: f64, p99: f64, rss_kib: u64) -> Report {
        Report {
            label: label.into(),
            scenario: scenario.into(),
            connections: c,
            ok: 100,
            requests_per_second: rps,
            latency: Latency {
                p99_ms: p99,
                ..Default::default()
            },
            server: Some(ServerCost {
                rss_peak_kib: rss_kib,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn compare_args() -> CompareArgs {
        CompareArgs {
            reports: "r".into(),
            openssl_single: 1000.0,
            openssl_multi: 1800.0,
            cores: 2,
            facts: None,
            out_json: "o.json".into(),
            out_png: "o.png".into(),
            out_table: None,
        }
    }

    #[test]
    fn ratios_in_the_table_and_document() {
        let reports = Reports {
            all: vec![
                report(EMULATOR, "token-secret", 64, 1600.0, 10.0, 20 * 1024),
                report(PEER, "token-secret", 64, 800.0, 40.0, 100 * 1024),
                report(EMULATOR, "token-certificate", 64, 1440.0, 12.0, 20 * 1024),
            ],
        };
        let (md, doc) = table(&reports, &compare_args(), &json!({"cold_start_ms": 900.0}));
        assert!(
            md.contains("| c=64 | 1600 | 800 | **2.00 ×** (≥ 1.7)"),
            "{md}"
        );
        assert!(md.contains("**0.25 ×**"), "p99 ratio: {md}");
        assert!(md.contains("**0.20 ×**"), "RSS ratio: {md}");
        assert!(
            md.contains("**0.80 ×**"),
            "certificate vs openssl multi: {md}"
        );
        assert!(md.contains("| 900 / –"), "{md}");
        assert_eq!(doc["token_secret"][2]["rps_ratio"], json!(2.0));
        assert_eq!(
            doc["token_certificate"][2]["ratio_to_openssl_single"],
            json!(1.44)
        );
        assert_eq!(
            doc["token_secret"][0]["rps_ratio"],
            Value::Null,
            "missing runs stay empty"
        );
        assert_eq!(by_label(&reports)[EMULATOR].len(), 2);
    }

    #[test]
    fn scale_ratio_pools_the_alternating_rounds() {
        let round = |label: &str, ok: u64, secs: f64| Report {
            ok,
            elapsed_seconds: secs,
            ..report(label, "token-certificate", 8, ok as f64 / secs, 5.0, 1)
        };
        let reports = Reports {
            all: vec![
                round(EMULATOR_1APP, 2000, 1.0),
                round(EMULATOR_10K, 1900, 1.0),
                round(EMULATOR_1APP, 1000, 1.0),
                round(EMULATOR_10K, 1100, 1.0),
                // The main run of the default world is not part of the scale pair.
                round(EMULATOR, 9000, 1.0),
            ],
        };
        assert_eq!(
            reports.pooled_rps(EMULATOR_1APP, "token-certificate", 8),
            Some(1500.0)
        );
        let (md, doc) = table(&reports, &compare_args(), &json!({}));
        assert_eq!(doc["scale_10k_apps_ratio"], json!(1.0));
        assert!(
            md.contains("(2 alternating rounds each) | 1500 tokens/s | 1500 tokens/s | **1.00 ×**"),
            "{md}"
        );
    }

    #[test]
    fn chart_is_drawn_when_a_font_exists() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("c.png");
        let reports = Reports {
            all: vec![report(EMULATOR, "token-secret", 8, 1500.0, 5.0, 1)],
        };
        match chart(&reports, &compare_args(), &png) {
            Ok(()) => assert!(std::fs::metadata(&png).unwrap().len() > 1000),
            Err(e) => assert!(format!("{e:#}").contains("font"), "{e:#}"),
        }
    }
}
