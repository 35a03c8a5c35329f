//! The run: N keep-alive connections, one request in flight on each, an unmeasured warm-up,
//! then a measured phase bounded by a duration and/or a request count, while the server
//! process is sampled from `/proc`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use crate::args::RunArgs;
use crate::client::{Connection, Endpoint};
use crate::procfs;
use crate::scenarios::{self, Workload};
use crate::stats::{ErrorSample, Latency, Report, ServerCost};
use crate::target::{self, Plan};

/// Error examples kept in a report.
const ERROR_SAMPLES: usize = 5;
/// How often the server's RSS is sampled during the measured phase.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Runs a scenario as the arguments say and returns its report.
pub async fn run(args: &RunArgs) -> anyhow::Result<Report> {
    let plan = target::resolve(args)?;
    run_plan(&plan, args).await
}

/// Shared counters of the measured phase.
struct Tally {
    /// Requests the measured phase may still start (`u64::MAX`: unbounded).
    budget: AtomicU64,
    errors: AtomicU64,
    samples: Mutex<Vec<ErrorSample>>,
    /// Set once the measured phase is over.
    stop: AtomicBool,
}

impl Tally {
    /// Takes one request from the budget; false when it is used up.
    fn take(&self) -> bool {
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                if b == u64::MAX {
                    Some(b)
                } else {
                    b.checked_sub(1)
                }
            })
            .is_ok()
    }

    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.samples.lock() {
            if s.len() < ERROR_SAMPLES {
                s.push(ErrorSample { what });
            }
        }
    }
}

pub async fn run_plan(plan: &Plan, args: &RunArgs) -> anyhow::Result<Report> {
    let connections = args.connections as usize;
    let (duration, requests) = args.bounds();

    // Set-up and a probe on the first connection: a scenario that cannot work stops here
    // with the server's own answer, instead of producing a run full of errors.
    let mut first = plan.endpoint.connect().await?;
    let load = scenarios::prepare(&mut first, plan, args).await?;
    let mut probe = load.worker(0);
    let answer = first.send(probe.next_request()).await?;
    probe
        .check(&answer)
        .map_err(|e| anyhow!("{}: the first request failed: {e}", args.scenario.name()))?;

    let mut conns = vec![first];
    let opened = futures_join(&plan.endpoint, connections - 1).await?;
    conns.extend(opened);

    let tally = Arc::new(Tally {
        budget: AtomicU64::new(requests.unwrap_or(u64::MAX)),
        errors: AtomicU64::new(0),
        samples: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let warm_end = Instant::now() + args.warmup;
    let deadline = duration.map(|d| warm_end + d);

    let sampler = plan.pid.map(|pid| {
        let tally = tally.clone();
        tokio::spawn(sample_server(pid, warm_end, tally))
    });

    let mut tasks = Vec::with_capacity(connections);
    for (i, conn) in conns.into_iter().enumerate() {
        let worker = load.worker(i);
        let tally = tally.clone();
        let endpoint = plan.endpoint.clone();
        tasks.push(tokio::spawn(drive(
            conn, worker, endpoint, tally, warm_end, deadline,
        )));
    }
    let mut latencies = Vec::new();
    let mut last_end = warm_end;
    for t in tasks {
        let (lat, end) = t.await.context("a connection task panicked")?;
        latencies.extend(lat);
        last_end = last_end.max(end);
    }
    tally.stop.store(true, Ordering::Relaxed);
    let server = match sampler {
        Some(handle) => handle.await.ok().flatten(),
        None => None,
    };

    let elapsed = last_end.saturating_duration_since(warm_end).as_secs_f64();
    let ok = latencies.len() as u64;
    let mut report = Report {
        label: args.label.clone(),
        scenario: args.scenario.name().to_string(),
        target: plan.endpoint.base_url.clone(),
        connections,
        ok,
        errors: tally.errors.load(Ordering::Relaxed),
        elapsed_seconds: elapsed,
        requests_per_second: if elapsed > 0.0 {
            ok as f64 / elapsed
        } else {
            0.0
        },
        latency: Latency::from_micros(&mut latencies),
        server: server.map(|mut s| {
            s.cpu_percent = if elapsed > 0.0 {
                100.0 * s.cpu_seconds / elapsed
            } else {
                0.0
            };
            s
        }),
        extra: Default::default(),
        error_samples: tally.samples.lock().map(|s| s.clone()).unwrap_or_default(),
    };
    add_drain_figures(&load, args.days, &mut report);
    Ok(report)
}

/// management-drain: records served per second, next to a plain `serde_json` serialisation
/// of the same records measured in the same run.
fn add_drain_figures(load: &Workload, days: u32, report: &mut Report) {
    if load.scenario != crate::args::Scenario::ManagementDrain {
        return;
    }
    report.extra.insert("days".into(), days.into());
    let records = load.records.load(Ordering::Relaxed);
    let per_second = if report.elapsed_seconds > 0.0 {
        records as f64 / report.elapsed_seconds
    } else {
        0.0
    };
    report.extra.insert("records".into(), records.into());
    report
        .extra
        .insert("records_per_second".into(), round1(per_second).into());
    if let Some(plain) = load.plain_serde_records_per_second(Duration::from_millis(500)) {
        report.extra.insert(
            "plain_serde_json_records_per_second".into(),
            round1(plain).into(),
        );
        report.extra.insert(
            "ratio_to_plain_serde_json".into(),
            (round1(1000.0 * per_second / plain) / 1000.0).into(),
        );
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

async fn futures_join(endpoint: &Endpoint, n: usize) -> anyhow::Result<Vec<Connection>> {
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let e = endpoint.clone();
        handles.push(tokio::spawn(async move { e.connect().await }));
    }
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.context("connect task")??);
    }
    Ok(out)
}

/// One connection's loop. Returns the measured latencies (µs) and when its last one ended.
async fn drive(
    mut conn: Connection,
    mut worker: scenarios::Worker,
    endpoint: Endpoint,
    tally: Arc<Tally>,
    warm_end: Instant,
    deadline: Option<Instant>,
) -> (Vec<u64>, Instant) {
    let mut latencies = Vec::new();
    let mut last_end = warm_end;
    loop {
        let now = Instant::now();
        let measured = now >= warm_end;
        if measured {
            if deadline.is_some_and(|d| now >= d) || tally.stop.load(Ordering::Relaxed) {
                break;
            }
            if !tally.take() {
                break;
            }
        }
        if !conn.is_open() {
            match endpoint.connect().await {
                Ok(c) => conn = c,
                Err(e) => {
                    if measured {
                        tally.error(format!("reconnect: {e:#}"));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let request = worker.next_request();
        let started = Instant::now();
        let result = conn.send(request).await;
        let ended = Instant::now();
        let outcome = match result {
            Ok(answer) => worker.check(&answer),
            Err(e) => Err(format!("transport: {e:#}")),
        };
        if !measured || started < warm_end {
            continue;
        }
        last_end = last_end.max(ended);
        match outcome {
            Ok(()) => latencies.push(ended.duration_since(started).as_micros() as u64),
            Err(what) => tally.error(what),
        }
    }
    (latencies, last_end)
}

/// Samples the server from the end of the warm-up until the run stops.
async fn sample_server(pid: u32, warm_end: Instant, tally: Arc<Tally>) -> Option<ServerCost> {
    tokio::time::sleep_until(warm_end.into()).await;
    let start = procfs::sample(pid)?;
    let mut peak = start.rss_kib;
    while !tally.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(RSS_SAMPLE_EVERY).await;
        if let Some(s) = procfs::sample(pid) {
            peak = peak.max(s.rss_kib);
        }
    }
    let end = procfs::sample(pid)?;
    Some(ServerCost {
        pid,
        cpu_seconds: end.cpu_seconds - start.cpu_seconds,
        cpu_percent: 0.0,
        rss_start_kib: start.rss_kib,
        rss_peak_kib: peak.max(end.rss_kib),
        vm_hwm_kib: end.hwm_kib,
    })
}
