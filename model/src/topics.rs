//! Topic names (contract.md#topics), in one value so
//! no binary invents its own: services build a [`Topics`] once from their
//! settings and hand it to whoever needs a name.

/// The entity-name part of a topic: lower case, `æ→ae`, `ø→oe`, `å→aa`.
pub fn slug(entity: &str) -> String {
    let mut out = String::with_capacity(entity.len() + 2);
    for c in entity.chars().flat_map(char::to_lowercase) {
        match c {
            'æ' => out.push_str("ae"),
            'ø' => out.push_str("oe"),
            'å' => out.push_str("aa"),
            other => out.push(other),
        }
    }
    out
}

/// Every topic name of one deployment: a prefix, and the dead-letter
/// topic (which an operator may point elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
    dlq: String,
}

impl Topics {
    /// The names under `prefix`, with the dead-letter topic `<prefix>-dlq`
    /// unless `dlq` names another.
    pub fn new(prefix: &str, dlq: Option<&str>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            dlq: dlq.map_or_else(|| format!("{prefix}-dlq"), str::to_owned),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>-<slug>`, e.g. `parliament-aktoer`.
    pub fn entity(&self, entity: &str) -> String {
        format!("{}-{}", self.prefix, slug(entity))
    }

    /// A one-to-one processor's output: `<input>-processed`.
    pub fn processed(&self, input: &str) -> String {
        format!("{input}-processed")
    }

    /// The output of a processor with several inputs:
    /// `<prefix>-<processor>-processed`.
    pub fn processor_output(&self, processor: &str) -> String {
        self.processor_topic(processor, "processed")
    }

    /// A processor's own topic of a kind (`repartition`, `changelog`):
    /// `<prefix>-<processor>-<kind>`.
    pub fn processor_topic(&self, processor: &str, kind: &str) -> String {
        format!("{}-{processor}-{kind}", self.prefix)
    }

    pub fn dlq(&self) -> &str {
        &self.dlq
    }

    /// The producer's cursors, one compacted record per entity set.
    pub fn checkpoints(&self) -> String {
        format!("{}-cdc-checkpoints", self.prefix)
    }

    /// The producer's last published hash per record.
    pub fn state(&self) -> String {
        format!("{}-cdc-state", self.prefix)
    }

    /// Backfill requests and their progress.
    pub fn signals(&self) -> String {
        format!("{}-cdc-signals", self.prefix)
    }

    /// What `oda-replay` did, one record per executed replay.
    pub fn replay_log(&self) -> String {
        format!("{}-replay-log", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let topics = Topics::new("parliament", None);
        assert_eq!(topics.entity("Sag"), "parliament-sag");
        assert_eq!(topics.entity("Aktør"), "parliament-aktoer");
        assert_eq!(topics.entity("Møde"), "parliament-moede");
        assert_eq!(topics.entity("SagAktør"), "parliament-sagaktoer");
        assert_eq!(slug("Afgørelsesårsag"), "afgoerelsesaarsag");
        assert_eq!(
            topics.processed("parliament-sag"),
            "parliament-sag-processed"
        );
        assert_eq!(
            topics.processor_output("votes"),
            "parliament-votes-processed"
        );
        assert_eq!(
            topics.processor_topic("votes", "changelog"),
            "parliament-votes-changelog"
        );
        assert_eq!(topics.dlq(), "parliament-dlq");
        assert_eq!(topics.checkpoints(), "parliament-cdc-checkpoints");
        assert_eq!(topics.state(), "parliament-cdc-state");
        assert_eq!(topics.signals(), "parliament-cdc-signals");
        assert_eq!(topics.replay_log(), "parliament-replay-log");
    }

    #[test]
    fn the_dead_letter_topic_can_be_pointed_elsewhere() {
        let topics = Topics::new("it-1", Some("shared-dlq"));
        assert_eq!(topics.dlq(), "shared-dlq");
        assert_eq!(topics.entity("Sag"), "it-1-sag");
    }
}
