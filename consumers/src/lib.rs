//! The consumer side of oda-cdc: a runner for pluggable processors and the
//! processors themselves. A processor implements [`Processor`]; its binary
//! is `fn main() -> ExitCode { oda_consumers::main::<MyProcessor>() }`.

pub mod changelog;
pub mod dead_letter;
pub mod decode;
pub mod follow;
pub mod metrics;
pub mod processor;
pub mod processors;
pub mod replay;
pub mod runner;

use std::process::ExitCode;

use clap::Parser;
use oda_cdc_core::cli::{ConfigArgs, Failure, exit_code};

pub use crate::processor::{Context, Input, Output, ProcessError, Processor, Unusable};

/// Flags every processor binary takes.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "An oda-cdc processor: reads entity topics, writes `-processed` topics."
)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// This instance's name, unique among the instances of one group (it
    /// makes the transactional id); defaults to the host name.
    #[arg(long, env = "HOSTNAME", default_value = "0")]
    pub instance: String,
}

/// The whole `main` of a processor binary: flags, configuration (exit 2
/// on a bad key), logging, signals, the runner; SPEC §7's exit codes.
pub fn main<P: Processor>() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return exit_code(Err(Failure::Runtime(error.into()))),
    };
    exit_code(runtime.block_on(run::<P>(args)))
}

async fn run<P: Processor>(args: Args) -> Result<(), Failure> {
    let settings = args.config.load()?;
    oda_cdc_core::telemetry::init(settings.log.format);
    let shutdown = oda_cdc_core::shutdown::on_signals();
    let options = runner::RunOptions {
        instance: args.instance,
    };
    runner::run::<P>(settings, options, shutdown).await?;
    Ok(())
}
