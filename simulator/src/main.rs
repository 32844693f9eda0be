//! `oda-sim`: serves a simulated ODA API until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use oda_sim::cli::Args;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    oda_sim::cli::init_logging();
    match oda_sim::serve(args.to_config(), oda_sim::cli::on_signals()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
