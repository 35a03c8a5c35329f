//! The `m365-emulator` command: argument parsing and process concerns only; everything else
//! is the library.

mod teams_cli;

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use m365_emulator::settings::{default_state_dir, DEFAULT_HTTPS_PORT, DEFAULT_HTTP_PORT};
use m365_emulator::{Emulator, Overrides, ReadyInfo, World};

/// A local, offline emulator of Entra ID, the Office 365 Management Activity API, Azure
/// Communication Services and Microsoft Graph, with generated certificates.
///
/// Every option can also be set with the environment variable shown; precedence is
/// flag > environment variable > the world file's [server] table > default.
#[derive(Parser, Debug)]
#[command(name = "m365-emulator", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the world over HTTPS and HTTP (the default command).
    Serve(ServeArgs),
    /// Print shell exports for a running emulator: eval "$(m365-emulator env)".
    Env(EnvArgs),
    /// Print the embedded default world (TOML), a starting point for --config.
    DefaultWorld,
    /// Teams admin cmdlets (application access policies) against a running emulator.
    Teams(teams_cli::TeamsArgs),
}

#[derive(Args, Debug, Clone)]
struct ServeArgs {
    /// World file (TOML) to serve instead of the embedded default world.
    #[arg(long, value_name = "FILE", env = "M365EMU_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the CA, certificates, signing keys and ready.json
    /// [default: $XDG_STATE_HOME/m365-emulator or ~/.local/state/m365-emulator].
    #[arg(long, value_name = "DIR", env = "M365EMU_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR", env = "M365EMU_BIND")]
    bind: Option<IpAddr>,
    /// HTTPS port; 0 picks a free port [default: 8443].
    #[arg(long, value_name = "N", env = "M365EMU_HTTPS_PORT")]
    https_port: Option<u16>,
    /// Plain-HTTP port; 0 picks a free port [default: 8080].
    #[arg(long, value_name = "N", env = "M365EMU_HTTP_PORT")]
    http_port: Option<u16>,
    /// Also write the ready file here (always written to STATE_DIR/ready.json).
    #[arg(long, value_name = "FILE", env = "M365EMU_READY_FILE")]
    ready_file: Option<PathBuf>,
    /// Run the forward proxy of proxy mode on this port (0 picks a free port): clients with
    /// HTTPS_PROXY set reach the emulator by the real Microsoft host names [default: off].
    #[arg(long, value_name = "N", env = "M365EMU_PROXY_PORT")]
    proxy_port: Option<u16>,
    /// Accepted clock skew for client assertions, in seconds [default: 300].
    #[arg(long, value_name = "N", env = "M365EMU_CLOCK_SKEW_SECONDS")]
    clock_skew_seconds: Option<u64>,
    /// Access-token lifetime in seconds, 60..=86400 [default: 3600].
    #[arg(long, value_name = "N", env = "M365EMU_TOKEN_LIFETIME_SECONDS")]
    token_lifetime_seconds: Option<u64>,
    /// Host used in v2 token issuers [default: login.microsoftonline.com].
    #[arg(long, value_name = "HOST", env = "M365EMU_ISSUER_HOST")]
    issuer_host: Option<String>,
    /// Seed for generated RSA keys (reproducible thumbprints); default: OS randomness.
    #[arg(long, value_name = "N", env = "M365EMU_KEY_SEED")]
    key_seed: Option<u64>,
    /// Entries kept in the request journal (a ring buffer) [default: 10000].
    #[arg(long, value_name = "N", env = "M365EMU_JOURNAL_CAPACITY")]
    journal_capacity: Option<usize>,
    /// Headless sign-in for CI: an authorize request with `login_hint=<user>` signs that user
    /// in and accepts consent without the pages [default: false].
    #[arg(long, value_name = "BOOL", env = "M365EMU_AUTO_SIGN_IN", num_args = 0..=1, default_missing_value = "true")]
    auto_sign_in: Option<bool>,
    /// A fault rule (JSON, as POST /_emulator/faults takes) loaded at start; repeatable.
    #[arg(long = "fault", value_name = "JSON")]
    faults: Vec<String>,
    /// Log filter, e.g. info or m365_emulator=debug.
    #[arg(
        long,
        value_name = "FILTER",
        env = "M365EMU_LOG",
        default_value = "info"
    )]
    log: String,
}

#[derive(Args, Debug)]
struct EnvArgs {
    /// The ready file of the emulator to describe [default: STATE_DIR/ready.json].
    #[arg(long, value_name = "FILE", env = "M365EMU_READY_FILE")]
    ready_file: Option<PathBuf>,
    /// State directory whose ready.json to read when --ready-file is not given.
    #[arg(long, value_name = "DIR", env = "M365EMU_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Proxy mode: HTTPS_PROXY, NO_PROXY and the CA trust variables, so that unmodified
    /// programs keep their real Microsoft host names (needs an emulator run with --proxy-port).
    #[arg(long)]
    proxy: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Env(args)) => env(args),
        Some(Command::DefaultWorld) => {
            print!("{}", m365_emulator::world::DEFAULT_WORLD_TOML);
            Ok(())
        }
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Teams(args)) => teams_cli::run(args),
        None => serve(cli.serve),
    }
}

fn env(args: EnvArgs) -> Result<()> {
    let path = args.ready_file.unwrap_or_else(|| {
        args.state_dir
            .unwrap_or_else(default_state_dir)
            .join("ready.json")
    });
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no running emulator: cannot read ready file {}",
            path.display()
        )
    })?;
    let ready: ReadyInfo = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an m365-emulator ready file", path.display()))?;
    if args.proxy {
        let exports = m365_emulator::proxy::env_exports(&ready).with_context(|| {
            format!(
                "the emulator of {} runs without its proxy: start it with --proxy-port N (0 = a free port)",
                path.display()
            )
        })?;
        print!("{exports}");
        return Ok(());
    }
    print!("{}", ready.env_exports());
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log)
                .context("invalid value for `--log`")?,
        )
        .with_writer(std::io::stderr)
        .init();
    let world = match &args.config {
        Some(path) => World::from_file(path)?,
        None => World::default_world()?,
    };
    let overrides = Overrides {
        bind: args.bind,
        https_port: args.https_port,
        http_port: args.http_port,
        state_dir: Some(args.state_dir.clone().unwrap_or_else(default_state_dir)),
        ready_file: args.ready_file.clone(),
        clock_skew_seconds: args.clock_skew_seconds,
        token_lifetime_seconds: args.token_lifetime_seconds,
        issuer_host: args.issuer_host.clone(),
        key_seed: args.key_seed,
        journal_capacity: args.journal_capacity,
        auto_sign_in: args.auto_sign_in,
        proxy_port: args.proxy_port,
    };
    let mut faults = Vec::new();
    for (i, text) in args.faults.iter().enumerate() {
        let rule: serde_json::Value = serde_json::from_str(text)
            .with_context(|| format!("invalid value for `--fault` #{}: not JSON", i + 1))?;
        faults.push(rule);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(async_workers())
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut builder = Emulator::builder().world(world);
        for rule in faults {
            builder = builder.fault(rule);
        }
        let emulator = builder
            .overrides(overrides)
            .default_ports(DEFAULT_HTTPS_PORT, DEFAULT_HTTP_PORT)
            .start()
            .await?;
        print_banner(&emulator);
        wait_for_signal().await;
        eprintln!("m365-emulator: shutting down");
        emulator.shutdown().await;
        Ok(())
    })
}

/// Async (I/O) workers: half the CPUs, at least one; `TOKIO_WORKER_THREADS` overrides.
///
/// The emulator's CPU goes into RSA signatures, which run on threads of their own (one per
/// CPU, `cpu_pool`) or leave their worker with `http::cpu_heavy`; the async workers
/// only parse, check and answer. With as many workers as CPUs they kept parking and
/// waking around every signature: at 64 connections on 2 vCPUs, 4.2 context switches per
/// token with two workers against 1.0 with one, and about 10 % fewer tokens per second.
fn async_workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or((cpus / 2).max(1))
}

fn print_banner(e: &Emulator) {
    let r = e.ready();
    let tenant = r.tenants.first();
    let tid = tenant.map_or("<tenant>", |t| t.id.as_str());
    let app = tenant.and_then(|t| t.applications.first());
    let client = app.map_or("<client-id>", |a| a.client_id.as_str());
    let secret = app
        .and_then(|a| a.client_secret.as_deref())
        .unwrap_or("<secret>");
    println!(
        "m365-emulator {version} is ready\n\
         \n  HTTPS        {https}\n  HTTP         {http}\n  CA cert      {ca}\n  state dir    {state}\n  ready file   {state}/ready.json\n\
         \nTenants:",
        version = env!("CARGO_PKG_VERSION"),
        https = r.https_url,
        http = r.http_url,
        ca = r.ca_cert_path.display(),
        state = r.state_dir.display(),
    );
    for t in &r.tenants {
        println!(
            "  {} {} ({} apps, {} users)",
            t.id,
            t.domain,
            t.applications.len(),
            t.users.len()
        );
    }
    if let Some(proxy) = &r.proxy_url {
        println!("\nProxy mode: {proxy} (real host names)   eval \"$(m365-emulator env --proxy)\"");
    }
    println!(
        "\nPoint a shell at it:   eval \"$(m365-emulator env)\"\n\
         \nMSAL Python:\n  export REQUESTS_CA_BUNDLE={ca}\n  msal.ConfidentialClientApplication(\"{client}\", client_credential=\"{secret}\",\n      authority=\"{https}/{tid}\", instance_discovery=False)\n\
         \nazure-identity (Python):\n  ClientSecretCredential(\"{tid}\", \"{client}\", \"{secret}\", authority=\"{https}\",\n      disable_instance_discovery=True)\n\
         \nControl plane: {https}/_emulator/health   (Ctrl-C to stop)",
        ca = r.ca_cert_path.display(),
        https = r.https_url,
    );
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
