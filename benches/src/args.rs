//! The load driver's command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// What each request of a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// `client_credentials` with a client secret.
    TokenSecret,
    /// `client_credentials` with a certificate assertion, pre-signed by the driver and reused
    /// within its lifetime as MSAL and azure-identity do.
    TokenCertificate,
    /// Management Activity API: content listing pages (following `NextPageUri`) and blobs.
    ManagementDrain,
    /// ACS: create identity (`POST /identities?api-version=2023-10-01`) signed with HMAC.
    AcsHmac,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::TokenSecret => "token-secret",
            Scenario::TokenCertificate => "token-certificate",
            Scenario::ManagementDrain => "management-drain",
            Scenario::AcsHmac => "acs-hmac",
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "m365-load",
    about = "Loopback HTTPS load driver for m365-emulator (and its peers)",
    version
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drives one scenario and prints (and optionally writes) its report.
    Run(RunArgs),
    /// Reads the reports and openssl figures of one benchmark run; prints the comparison
    /// table, writes the results JSON and the PNG chart.
    Compare(CompareArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// The emulator's ready file: target URL, CA, credentials and pid come from it.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Base URL (`https://127.0.0.1:8443`); default: the ready file's `https_url`.
    #[arg(long)]
    pub target: Option<String>,
    /// PEM file of CA certificates to trust; default: the ready file's `ca_cert_path`.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Concurrent keep-alive connections, one request in flight on each.
    #[arg(long, short = 'c', default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub connections: u32,
    /// Measure for this long (`10s`, `500ms`, `2m`, or seconds).
    #[arg(long, short = 'd', value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Measure this many requests (with --duration: whichever comes first).
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Unmeasured requests before the run, on the same connections.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// The server process to sample (CPU, RSS); default: the ready file's `pid`.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Tenant of token requests; default: the ready file's first tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Client id; default: the first app of the tenant with a secret (and a certificate for
    /// token-certificate).
    #[arg(long)]
    pub client_id: Option<String>,
    #[arg(long)]
    pub client_secret: Option<String>,
    /// PEM with the client certificate (for token-certificate).
    #[arg(long)]
    pub certificate: Option<PathBuf>,
    /// PEM with the client certificate's PKCS#8 private key.
    #[arg(long)]
    pub private_key: Option<PathBuf>,
    /// Token endpoint path; default `/{tenant}/oauth2/v2.0/token` (a peer: `/token`).
    #[arg(long)]
    pub token_path: Option<String>,
    #[arg(long, default_value = "https://manage.office.com/.default")]
    pub scope: String,
    /// management-drain: how many days of content to list and fetch (1..=7), made by
    /// advancing the emulator's virtual clock after starting the subscription.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=7))]
    pub days: u32,
    /// acs-hmac: the ACS connection string; default: the ready file's first `acs[]` entry.
    #[arg(long)]
    pub acs_connection_string: Option<String>,
    /// A label for tables (default: the scenario's target kind).
    #[arg(long, default_value = "emulator")]
    pub label: String,
    /// Worker threads of the driver (it shares the machine with the server).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl RunArgs {
    /// The run is always bounded: 10 s when neither a duration nor a count is given.
    pub fn bounds(&self) -> (Option<Duration>, Option<u64>) {
        match (self.duration, self.requests) {
            (None, None) => (Some(Duration::from_secs(10)), None),
            other => other,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Directory of `m365-load run --json` reports.
    #[arg(long)]
    pub reports: PathBuf,
    /// `openssl speed rsa2048` sign/s on one core, measured in the same run.
    #[arg(long)]
    pub openssl_single: f64,
    /// `openssl speed -multi <cores> rsa2048` sign/s, measured in the same run.
    #[arg(long)]
    pub openssl_multi: f64,
    #[arg(long)]
    pub cores: u32,
    /// Extra facts (JSON object) to carry into the results: start-up times, idle RSS, …
    #[arg(long)]
    pub facts: Option<PathBuf>,
    /// Where to write all results as one JSON document.
    #[arg(long)]
    pub out_json: PathBuf,
    /// Where to write the chart (PNG).
    #[arg(long)]
    pub out_png: PathBuf,
    /// Where to write the table (Markdown) besides printing it.
    #[arg(long)]
    pub out_table: Option<PathBuf>,
}

/// `10s`, `250ms`, `2m`, or a plain number of seconds (fractions allowed).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (examples: 10s, 500ms, 2m)"))?;
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("'{text}' is outside 0..=24h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut argv = vec!["m365-load", "run"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Run(r) => r,
            Command::Compare(_) => unreachable!("parsed as run"),
        })
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("1e9").is_err());
        assert!(parse_duration("NaN").is_err());
    }

    #[test]
    fn defaults_and_bounds() {
        let r = run(&["--scenario", "token-secret"]).unwrap();
        assert_eq!(r.scenario, Scenario::TokenSecret);
        assert_eq!(r.connections, 8);
        assert_eq!(r.bounds(), (Some(Duration::from_secs(10)), None));
        assert_eq!(r.warmup, Duration::from_secs(1));
        assert_eq!(r.days, 1);
        let r = run(&["--scenario", "acs-hmac", "-n", "200", "-c", "64"]).unwrap();
        assert_eq!(r.bounds(), (None, Some(200)));
        assert_eq!(r.connections, 64);
        let r = run(&[
            "--scenario",
            "management-drain",
            "-d",
            "3s",
            "-n",
            "5",
            "--days",
            "7",
        ])
        .unwrap();
        assert_eq!(r.bounds(), (Some(Duration::from_secs(3)), Some(5)));
        assert_eq!(r.days, 7);
        assert_eq!(
            run(&["--scenario", "token-certificate"])
                .unwrap()
                .scenario
                .name(),
            "token-certificate"
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(run(&[]).is_err(), "a scenario is required");
        assert!(run(&["--scenario", "token-magic"]).is_err());
        assert!(run(&["--scenario", "token-secret", "-c", "0"]).is_err());
        assert!(run(&["--scenario", "token-secret", "-c", "5000"]).is_err());
        assert!(run(&["--scenario", "token-secret", "-n", "0"]).is_err());
        assert!(run(&["--scenario", "token-secret", "-d", "forever"]).is_err());
        assert!(run(&["--scenario", "management-drain", "--days", "8"]).is_err());
        assert!(run(&["--scenario", "token-secret", "--bogus"]).is_err());
    }

    #[test]
    fn compare_arguments() {
        let cli = Cli::try_parse_from([
            "m365-load",
            "compare",
            "--reports",
            "out",
            "--openssl-single",
            "1500",
            "--openssl-multi",
            "2900.5",
            "--cores",
            "2",
            "--out-json",
            "r.json",
            "--out-png",
            "c.png",
        ])
        .unwrap();
        match cli.command {
            Command::Compare(c) => {
                assert_eq!(c.openssl_multi, 2900.5);
                assert_eq!(c.cores, 2);
                assert!(c.facts.is_none());
            }
            Command::Run(_) => panic!("parsed as run"),
        }
    }
}
