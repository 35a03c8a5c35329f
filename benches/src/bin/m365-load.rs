//! `m365-load run …` drives a scenario against a running emulator (or a peer) over loopback
//! HTTPS; `m365-load compare …` turns the reports of one benchmark run into the comparison
//! table, the results JSON and the chart. See benches/README.md.

use clap::Parser;
use m365_benches::args::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.threads as usize)
                .enable_all()
                .build()?;
            let report = runtime.block_on(m365_benches::driver::run(&args))?;
            println!("{}", report.summary());
            for e in &report.error_samples {
                eprintln!("error example: {}", e.what);
            }
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
            }
            Ok(())
        }
        Command::Compare(args) => m365_benches::compare::run(&args),
    }
}
