//! `m365-conformance`: the command line.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};
use m365_conformance::{parse_expected_failures, report, runner, scenarios, target::Target};

#[derive(Parser)]
#[command(
    version,
    about = "Runs a Microsoft 365 daemon client against m365-emulator and reports what it does right and wrong, with evidence."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios against a client.
    Run(RunArgs),
    /// List the scenarios (id, suite, operation, title, requirement).
    List {
        /// As a Markdown table (id, operation, title and requirement link).
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Parser)]
struct RunArgs {
    /// The client, as a shell command (see conformance/CONTRACT.md).
    #[arg(long)]
    client: Option<String>,
    /// Suites to run: entra, management, acs, graph (default: all the client supports).
    #[arg(long, value_delimiter = ',')]
    suite: Vec<String>,
    /// Scenario ids to run (default: all).
    #[arg(long, num_args = 1..)]
    scenario: Vec<String>,
    /// The operations the client supports, comma-separated (default: ask the client with
    /// M365_CONFORMANCE_OPERATION=describe).
    #[arg(long)]
    operations: Option<String>,
    /// `junit=FILE` or `json=FILE`; repeatable.
    #[arg(long)]
    report: Vec<String>,
    /// A file of scenario ids expected to fail (one per line, `#` comments).
    #[arg(long)]
    expected_failures: Option<PathBuf>,
    /// Use a running emulator at this URL instead of starting one in-process.
    #[arg(long)]
    emulator: Option<String>,
    /// The running emulator's ready file (with --emulator; default: its default state dir).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Only list what would run.
    #[arg(long)]
    list: bool,
    /// In-process emulators to run scenarios on at once (each scenario still has one to
    /// itself). A running emulator (--emulator) runs them one after another.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    jobs: u16,
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly instead of panicking.
fn out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn print_list(markdown: bool) {
    let mut text = String::new();
    if markdown {
        text.push_str("| id | operation | title | requirement |\n|---|---|---|---|\n");
        for s in scenarios::all() {
            let req = if s.requirement.starts_with("http") {
                format!("[doc]({})", s.requirement)
            } else {
                s.requirement.to_string()
            };
            text.push_str(&format!(
                "| {} | `{}` | {} | {req} |\n",
                s.id, s.operation, s.title
            ));
        }
    } else {
        for s in scenarios::all() {
            text.push_str(&format!(
                "{:<20} {:<11} {:<15} {}\n{:<48}{}\n",
                s.id, s.suite, s.operation, s.title, "", s.requirement
            ));
        }
    }
    out(&text);
}

async fn run(args: RunArgs) -> Result<bool> {
    let selected: Vec<_> = scenarios::all()
        .into_iter()
        .filter(|s| args.suite.is_empty() || args.suite.iter().any(|x| x == s.suite))
        .filter(|s| args.scenario.is_empty() || args.scenario.iter().any(|x| x == s.id))
        .collect();
    const SUITES: [&str; 4] = ["entra", "management", "acs", "graph"];
    if let Some(unknown) = args.suite.iter().find(|s| !SUITES.contains(&s.as_str())) {
        return Err(anyhow!(
            "no suite {unknown:?} (the suites are {})",
            SUITES.join(", ")
        ));
    }
    if let Some(unknown) = args
        .scenario
        .iter()
        .find(|id| !scenarios::all().iter().any(|s| s.id == id.as_str()))
    {
        return Err(anyhow!(
            "no scenario {unknown} (see `m365-conformance list`)"
        ));
    }
    if args.list {
        let lines: Vec<String> = selected
            .iter()
            .map(|s| format!("{:<20} {}\n", s.id, s.title))
            .collect();
        out(&lines.concat());
        return Ok(true);
    }
    let client = args.client.clone().context("--client is required")?;
    let mut reports = Vec::new();
    for r in &args.report {
        let (kind, file) = r
            .split_once('=')
            .with_context(|| format!("--report {r}: expected junit=FILE or json=FILE"))?;
        if kind != "junit" && kind != "json" {
            return Err(anyhow!("--report {r}: the formats are junit and json"));
        }
        reports.push((kind.to_string(), PathBuf::from(file)));
    }
    let expected = match &args.expected_failures {
        Some(p) => parse_expected_failures(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        None => BTreeSet::new(),
    };
    let operations = runner::client_operations(&client, args.operations.as_deref()).await?;
    let mut targets = Vec::new();
    match &args.emulator {
        Some(url) => {
            let ready = args
                .ready_file
                .clone()
                .unwrap_or_else(|| m365_emulator::settings::default_state_dir().join("ready.json"));
            targets.push(Arc::new(Target::remote(url, &ready).await?));
        }
        None => {
            let jobs = usize::from(args.jobs).min(selected.len().max(1));
            for _ in 0..jobs {
                targets.push(Arc::new(Target::in_process().await?));
            }
        }
    }
    eprintln!(
        "m365-conformance: {} scenarios against `{client}` on {} emulator(s) (operations: {})",
        selected.len(),
        targets.len(),
        operations.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    let results = runner::run_all(targets, &client, &selected, &operations, &expected, |r| {
        eprintln!("{}", report::progress_line(r))
    })
    .await;
    out(&report::table(&results));
    for (kind, file) in reports {
        let text = if kind == "junit" {
            report::junit(&results)
        } else {
            serde_json::to_string_pretty(&report::json(&results, &client))?
        };
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(!results.iter().any(|r| r.unexpected_failure()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::List { markdown } => {
            print_list(markdown);
            ExitCode::SUCCESS
        }
        Command::Run(args) => match run(args).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("m365-conformance: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}
