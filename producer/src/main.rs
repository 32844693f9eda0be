//! `oda-producer`: see `oda-producer --help`.

use std::process::ExitCode;

use clap::Parser;
use oda_cdc_core::cli::{Failure, exit_code};
use oda_producer::app::{self, RunOptions};
use oda_producer::cli::{Args, Command};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    exit_code(run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), Failure> {
    let settings = args.config.load()?;
    oda_cdc_core::telemetry::init(settings.log.format);
    // Entity names are checked before anything starts: a typo is a
    // configuration error (exit 2), not a runtime failure.
    app::entity_plans(&settings).map_err(|e| {
        Failure::Config(oda_cdc_core::config::ConfigError::InvalidValue {
            key: "entities".into(),
            origin: oda_cdc_core::config::Origin::Merged,
            message: e.to_string(),
        })
    })?;
    match args.command {
        Command::Run { from } => {
            let shutdown = oda_cdc_core::shutdown::on_signals();
            app::run(settings, RunOptions::from(from), shutdown).await?;
        }
        Command::Snapshot { entities, since } => {
            oda_producer::requests::snapshot(settings, entities, since).await?;
        }
        Command::Rewind { entity, to } => {
            oda_producer::requests::rewind(settings, entity, to).await?;
        }
        Command::Schemas {
            command: oda_producer::cli::SchemasCommand::Register,
        } => {
            let plans = app::entity_plans(&settings).map_err(Failure::Runtime)?;
            let client = settings
                .schema_registry
                .client()
                .map_err(|e| Failure::Runtime(e.into()))?;
            let entities: Vec<(String, String)> = plans
                .iter()
                .map(|p| (p.entity.clone(), p.topic.clone()))
                .collect();
            oda_producer::encode::register(&client, &entities)
                .await
                .map_err(|e| Failure::Runtime(e.into()))?;
            println!("{} schemas registered.", entities.len());
        }
        Command::Status => {
            oda_producer::status::print(&settings).await?;
        }
    }
    Ok(())
}
