//! oda-producer against the real broker and oda-sim's ground truth.

mod avro;
mod backfill;
mod broker_restart;
mod cli;
mod cluster;
mod cluster_failover;
mod cluster_secure;
mod crash;
mod deletes;
mod failover;
mod faults;
mod harness;
mod hostile;
mod oversize;
mod secrets;
mod streaming;
