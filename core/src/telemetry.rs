//! Logging setup: one subscriber for every binary, text or JSON.
//!
//! `RUST_LOG` overrides the default filter. librdkafka's own log lines
//! arrive under the `librdkafka` target (see [`crate::kafka::context`]).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::config::LogFormat;

/// Default filter when `RUST_LOG` is unset: our crates at info, chatty
/// dependencies at warn.
pub const DEFAULT_FILTER: &str = "info,librdkafka=warn,hyper=warn,reqwest=warn,h2=warn";

/// Installs the global subscriber. Safe to call twice (the second call is
/// ignored), which keeps tests that build several services simple.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr).with_target(true))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // Already installed (tests, or a binary calling twice): keep the first.
    drop(result);
}
