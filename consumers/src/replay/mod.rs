//! `oda-replay` (contract.md#command-lines): reset a group's offsets, copy a time range of a
//! topic, redrive consumer dead letters. Every executed replay is recorded
//! in the replay-log topic: what, when, how many records.

pub mod cli;
pub mod copy;
pub mod log;
pub mod redrive;
pub mod reset;

use std::time::Duration;

use oda_cdc_core::config::KafkaSettings;
use oda_model::odatime;
use oda_model::topics::Topics;

/// Where a replay runs: the cluster, and the deployment's topic names
/// (the replay log, the dead-letter topic).
#[derive(Debug, Clone, Copy)]
pub struct Cluster<'a> {
    pub kafka: &'a KafkaSettings,
    pub topics: &'a Topics,
}

/// How long a metadata or offset call to the broker may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(15);

/// A `<time>` of the command line as epoch milliseconds (UTC).
pub fn epoch_millis(text: &str) -> Result<i64, String> {
    let local = odatime::parse_user_time(text).map_err(|_| {
        format!("`{text}` is not a time like 2026-11-01T00:00:00 (Danish) or 2026-10-31T23:00:00Z")
    })?;
    Ok(odatime::local_to_utc(local).timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_and_without_an_offset() {
        // Winter: Copenhagen is UTC+1.
        assert_eq!(
            epoch_millis("2026-11-01T01:00:00"),
            epoch_millis("2026-11-01T00:00:00Z")
        );
        assert!(epoch_millis("last tuesday").is_err());
    }
}
