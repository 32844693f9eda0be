//! The processors shipped with oda-cdc, one binary each.

pub mod history;
pub mod normalize;
pub mod passthrough;
pub mod pgsink;
pub mod votes;
