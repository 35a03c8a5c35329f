//! The load driver against an in-process emulator over real loopback HTTPS: short, bounded
//! runs (a fixed request count) that must finish with zero errors and a sane report.

use std::time::Duration;

use clap::Parser;
use m365_benches::args::{Cli, Command, RunArgs};
use m365_benches::driver;
use m365_emulator::Emulator;

async fn emulator() -> (Emulator, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("state dir");
    let emu = Emulator::builder()
        .state_dir(dir.path())
        .key_seed(7)
        .start()
        .await
        .expect("emulator starts");
    (emu, dir)
}

fn run_args(emu: &Emulator, extra: &[&str]) -> RunArgs {
    let ready = emu.state_dir().join("ready.json");
    let mut argv = vec![
        "m365-load".to_string(),
        "run".to_string(),
        "--ready-file".to_string(),
        ready.display().to_string(),
        "--warmup".to_string(),
        "0s".to_string(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    match Cli::try_parse_from(argv).expect("arguments").command {
        Command::Run(r) => r,
        Command::Compare(_) => panic!("not a run"),
    }
}

async fn bounded(args: &RunArgs) -> anyhow::Result<m365_benches::stats::Report> {
    tokio::time::timeout(Duration::from_secs(120), driver::run(args))
        .await
        .expect("the run ends well within its bound")
}

fn assert_sane(r: &m365_benches::stats::Report, requests: u64) {
    assert_eq!(r.errors, 0, "errors: {:?}", r.error_samples);
    assert_eq!(r.ok, requests, "exactly the requested count");
    assert!(r.elapsed_seconds > 0.0);
    assert!(r.requests_per_second > 0.0);
    let l = r.latency;
    assert!(0.0 < l.p50_ms && l.p50_ms <= l.p90_ms && l.p90_ms <= l.p99_ms);
    assert!(l.p99_ms <= l.max_ms && l.mean_ms <= l.max_ms);
    let server = r.server.as_ref().expect("the ready file's pid is sampled");
    assert_eq!(
        server.pid,
        std::process::id(),
        "in-process: the test's own pid"
    );
    assert!(server.rss_peak_kib >= server.rss_start_kib && server.rss_start_kib > 0);
    assert!(server.cpu_seconds >= 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_secret_200_requests_without_errors() {
    let (emu, _dir) = emulator().await;
    let args = run_args(
        &emu,
        &["--scenario", "token-secret", "-n", "200", "-c", "4"],
    );
    let r = bounded(&args).await.expect("run");
    assert_sane(&r, 200);
    assert_eq!(r.scenario, "token-secret");
    assert_eq!(r.connections, 4);
    assert_eq!(r.target, emu.https_uri().trim_end_matches('/'));
    // Every request minted a token: the journal saw them all (plus the probe).
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_certificate_reuses_a_presigned_assertion() {
    let (emu, _dir) = emulator().await;
    let args = run_args(
        &emu,
        &["--scenario", "token-certificate", "-n", "50", "-c", "2"],
    );
    let r = bounded(&args).await.expect("run");
    assert_sane(&r, 50);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_drain_lists_pages_and_counts_blob_records() {
    let (emu, _dir) = emulator().await;
    let args = run_args(
        &emu,
        &[
            "--scenario",
            "management-drain",
            "-n",
            "40",
            "-c",
            "2",
            "--days",
            "2",
        ],
    );
    let r = bounded(&args).await.expect("run");
    assert_sane(&r, 40);
    let records = r.extra["records"].as_u64().expect("records");
    assert!(records > 0, "blobs were fetched and counted: {:?}", r.extra);
    assert_eq!(r.extra["days"], 2);
    assert!(
        r.extra["plain_serde_json_records_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acs_hmac_runs_or_says_the_build_has_no_acs() {
    let (emu, _dir) = emulator().await;
    let args = run_args(&emu, &["--scenario", "acs-hmac", "-n", "20", "-c", "2"]);
    match bounded(&args).await {
        Ok(r) => assert_sane(&r, 20),
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(
                msg.contains("does not serve the ACS identity API")
                    || msg.contains("lists no ACS resource"),
                "a clear reason, not a generic failure: {msg}"
            );
        }
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_stops_at_the_probe_with_the_server_answer() {
    let (emu, _dir) = emulator().await;
    let args = run_args(
        &emu,
        &[
            "--scenario",
            "token-secret",
            "-n",
            "5",
            "--client-secret",
            "wrong",
        ],
    );
    let e = bounded(&args).await.expect_err("a bad credential fails");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("first request failed") && msg.contains("7000215"),
        "{msg}"
    );
    emu.shutdown().await;
}
