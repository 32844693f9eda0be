//! The runner and the processors against the real broker (and registry).

mod dead_letters;
mod exactly_once;
mod harness;
mod history;
mod normalize;
mod observability;
mod rebalance;
mod replay;
mod restart;
mod votes;
