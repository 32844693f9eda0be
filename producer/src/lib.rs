//! `oda-producer`: polls every ODA entity set and publishes each change to
//! its topic in Kafka transactions (SPEC §2–§5).
//!
//! The pieces: [`worker`] reads one entity set (snapshot, then keyset
//! polling) and turns pages into batches; [`committer`] is the one writer
//! that puts records, per-id state and checkpoints into one transaction;
//! [`restore`] reads checkpoints and state back after a restart; [`app`]
//! supervises them and restarts the pipeline from Kafka when a transaction
//! fails.

pub mod app;
pub mod checkpoint;
pub mod cli;
pub mod committer;
pub mod encode;
pub mod id_table;
pub mod keyset;
pub mod metadata;
pub mod metrics;
pub mod requests;
pub mod restore;
pub mod signals;
pub mod state;
pub mod status;
pub mod worker;
