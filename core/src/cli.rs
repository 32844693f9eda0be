//! Command-line pieces every binary shares: the configuration flags and
//! the mapping of failures to the exit codes of contract.md#exit-codes.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{ConfigError, Layers, Settings};

/// Flags that feed the configuration layers.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file; the environment and flags override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Sets any configuration key, e.g. `--set poll.interval=30s` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A librdkafka property, e.g. `--kafka-property security.protocol=SASL_SSL` (repeatable).
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_property: Vec<String>,
}

impl ConfigArgs {
    /// The file, environment and flag layers, ready for more flags of the
    /// binary's own.
    pub fn layers(&self) -> Result<Layers, ConfigError> {
        Layers::standard(self.config.as_deref(), &self.set, &self.kafka_property)
    }

    /// The validated settings.
    pub fn load(&self) -> Result<Settings, ConfigError> {
        Settings::load(&self.layers()?)
    }
}

/// How a binary's run ended; `main` returns `exit_code()` of it.
#[derive(Debug)]
pub enum Failure {
    /// Bad configuration or usage: exit 2.
    Config(ConfigError),
    /// Anything found while running: exit 1.
    Runtime(anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(error: ConfigError) -> Self {
        Failure::Config(error)
    }
}

impl From<crate::service::StartError> for Failure {
    /// A replication the cluster cannot give is the configuration's fault
    /// (exit 2, naming the key); any other start-up failure is not.
    fn from(error: crate::service::StartError) -> Self {
        use crate::kafka::TopicError;
        use crate::service::StartError;
        match error {
            StartError::Topics(TopicError::Durability(refused)) => {
                Failure::Config(ConfigError::InvalidValue {
                    key: refused.key,
                    origin: crate::config::Origin::Cluster,
                    message: refused.message,
                })
            }
            other => Failure::Runtime(other.into()),
        }
    }
}

impl From<anyhow::Error> for Failure {
    /// A start-up failure keeps its exit status through `anyhow`: a
    /// replication the cluster cannot give is still bad configuration.
    fn from(error: anyhow::Error) -> Self {
        match error.downcast::<crate::service::StartError>() {
            Ok(start) => Failure::from(start),
            Err(error) => Failure::Runtime(error),
        }
    }
}

/// A binary's whole run: `run` on a multi-threaded Tokio runtime, its
/// outcome as the exit status of [`exit_code`].
pub fn run_to_exit(run: impl std::future::Future<Output = Result<(), Failure>>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => exit_code(runtime.block_on(run)),
        Err(error) => exit_code(Err(Failure::Runtime(error.into()))),
    }
}

/// Prints the failure as one line on stderr (logging may not be set up
/// yet) and gives the exit status: 0, 1 or 2.
pub fn exit_code(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(error)) => {
            eprintln!("error: configuration: {error}");
            ExitCode::from(ConfigError::EXIT_CODE)
        }
        Err(Failure::Runtime(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
