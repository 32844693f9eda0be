//! The consumer side of oda-cdc, in three parts:
//!
//! - [`runner`]: the framework, what every processor shares (batches,
//!   decoding, retries, dead letters, transactions, partitioned state);
//! - [`processors`]: the processors themselves;
//! - [`replay`]: `oda-replay`, resetting, copying and redriving.
//!
//! A processor implements [`Processor`]; its binary is
//! `fn main() -> ExitCode { oda_consumers::main::<MyProcessor>() }`.

pub mod processors;
pub mod replay;
pub mod runner;

use std::process::ExitCode;

use clap::Parser;
use oda_cdc_core::cli::{ConfigArgs, Failure, run_to_exit};

pub use crate::runner::processor::{Context, Input, Output, ProcessError, Processor, Unusable};

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
/// on a bad key), logging, signals, the runner; exit codes of
/// contract.md#exit-codes.
pub fn main<P: Processor>() -> ExitCode {
    main_with::<P>(Args::parse())
}

/// [`main`] for a binary that parses flags of its own around [`Args`].
pub fn main_with<P: Processor>(args: Args) -> ExitCode {
    run_to_exit(run::<P>(args))
}

async fn run<P: Processor>(args: Args) -> Result<(), Failure> {
    let settings = args.config.load()?;
    P::check_settings(&settings)?;
    oda_cdc_core::telemetry::init(settings.log.format);
    let shutdown = oda_cdc_core::shutdown::on_signals();
    let options = runner::RunOptions {
        instance: args.instance,
    };
    runner::run::<P>(settings, options, shutdown).await?;
    Ok(())
}
