//! Shared parts of oda-cdc.
//!
//! Every binary of the workspace (the producer, the consumer processors,
//! `oda-replay`, `oda-sim`) builds on this crate, so that configuration,
//! logging, metrics, health endpoints, shutdown and the Kafka and registry
//! clients behave the same everywhere. The binaries stay thin.

pub mod admin;
pub mod cli;
pub mod config;
pub mod dead_letter;
pub mod health;
pub mod kafka;
pub mod metrics;
pub mod oda;
pub mod progress;
pub mod registry;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod telemetry;
