//! Shared parts of oda-cdc.
//!
//! Every binary of the workspace (the producer, the consumer processors,
//! `oda-replay`, `oda-sim`) builds on this crate, so that configuration,
//! logging, metrics, health endpoints, shutdown and the Kafka and registry
//! clients behave the same everywhere. The binaries stay thin.

pub mod admin;
pub mod avro;
pub mod cli;
pub mod config;
pub mod event;
pub mod hash;
pub mod health;
pub mod kafka;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod oda;
pub mod odatime;
pub mod progress;
pub mod registry;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod topics;

/// The `source.system` attribution the ODA terms of use ask for.
pub const SOURCE_SYSTEM: &str = "Folketingets Åbne Data (oda.ft.dk)";

/// The real ODA API; the default for `source.base_url`.
pub const DEFAULT_ODA_BASE_URL: &str = "https://oda.ft.dk/api";
