//! `oda-producer`: polls every ODA entity set and publishes each change to
//! its topic in Kafka transactions (contract.md#delivery-guarantees).
//!
//! The pieces: `worker` reads one entity set (snapshot, then keyset
//! polling) and turns pages into batches; `committer` is the one writer
//! that puts records, per-id state and checkpoints into one transaction;
//! `restore` reads checkpoints and state back after a restart; `app`
//! supervises them and restarts the pipeline from Kafka when a transaction
//! fails. Only what the binary and the tests need is public.

mod app;
pub mod checkpoint;
mod cli;
mod committer;
mod encode;
mod id_table;
mod keyset;
mod lease;
mod metrics;
mod requests;
mod restore;
mod signals;
mod state;
mod status;
mod worker;

use std::collections::HashMap;

use oda_cdc_core::config::KafkaSettings;
use oda_model::topics::Topics;

pub use crate::app::{RunOptions, run};
pub use crate::cli::main;
pub use crate::restore::RestoreError;
pub use crate::worker::StartFrom;

/// Every entity's checkpoint as the checkpoint topic holds it now (what a
/// restart would resume from). Blocking: it reads the topic to its end.
pub fn read_checkpoints(
    kafka: &KafkaSettings,
    topics: &Topics,
) -> Result<HashMap<String, checkpoint::Checkpoint>, RestoreError> {
    restore::checkpoints(kafka, &topics.checkpoints())
}
