//! The runner and the processors against the real broker (and registry).

mod cluster_secure;
mod dead_letters;
mod exactly_once;
mod harness;
mod history;
mod missing_inputs;
mod normalize;
mod observability;
mod oversize;
mod pg_sink;
mod rebalance;
mod registry_outage;
mod replay;
mod restart;
mod votes;
