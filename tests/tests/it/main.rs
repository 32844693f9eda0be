//! Integration tests of the local stack and the shared plumbing, against
//! the real broker and registry (`scripts/stack up`).

mod contract_refs;
mod kafka_plumbing;
mod python_reader;
mod registry;
mod topic_reader;
mod transactions;
mod writer;
