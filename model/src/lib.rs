//! The pure core of oda-cdc: what a change *is*, with no I/O.
//!
//! Everything here is a function of its inputs: the entity model compiled
//! from ODA's `$metadata`, ODA's local time, the content hash, the change
//! event and its Avro form, topic names. Services (`oda-cdc-core` and the
//! binaries above it) add Kafka, HTTP and configuration; `oda-sim` and the
//! schema generator need only this crate, so they build without librdkafka.

pub mod avro;
pub mod csdl;
pub mod entity;
pub mod event;
pub mod hash;
pub mod odata;
pub mod odatime;
pub mod samples;
pub mod topics;

/// The `source.system` attribution the ODA terms of use ask for.
pub const SOURCE_SYSTEM: &str = "Folketingets Åbne Data (oda.ft.dk)";

/// The real ODA API; the default for `source.base_url`.
pub const DEFAULT_ODA_BASE_URL: &str = "https://oda.ft.dk/api";
