//! `oda-pg-sink`: see `oda-pg-sink --help` and docs/pg-sink.md.

use std::process::ExitCode;

use clap::Parser;
use oda_cdc_core::cli::{Failure, run_to_exit};
use oda_consumers::processors::pgsink::{PgSink, rebuild};

/// One allocator for the whole process, librdkafka's buffers included:
/// with glibc's malloc under librdkafka, the pass-through ran a quarter
/// slower (docs/BENCHMARKS.md, "One allocator for the processors too").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Mirrors the entity topics into PostgreSQL, exactly once.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Mirrors the entity topics into PostgreSQL tables, exactly once (docs/pg-sink.md)."
)]
struct Cli {
    #[command(flatten)]
    args: oda_consumers::Args,
    /// Instead of running: re-read ENTITY's topic from its start into a
    /// fresh table and swap it in atomically (the old table serves reads
    /// until then; a running sink goes on from the new table), then exit.
    #[arg(long, value_name = "ENTITY")]
    rebuild: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.rebuild {
        None => oda_consumers::main_with::<PgSink>(cli.args),
        Some(entity) => run_to_exit(run_rebuild(cli.args, entity)),
    }
}

async fn run_rebuild(args: oda_consumers::Args, entity: String) -> Result<(), Failure> {
    let settings = args.config.load()?;
    <PgSink as oda_consumers::Processor>::check_settings(&settings)?;
    oda_cdc_core::telemetry::init(settings.log.format);
    let shutdown = oda_cdc_core::shutdown::on_signals();
    let rebuilt = rebuild::rebuild(&settings, &entity, &shutdown).await?;
    println!(
        "rebuilt {}: {} records read, {} skipped, positions {:?}",
        rebuilt.table, rebuilt.records, rebuilt.skipped, rebuilt.positions
    );
    Ok(())
}
