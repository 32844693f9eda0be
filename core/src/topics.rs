//! Topic names (SPEC §3), in one place so no binary invents its own.

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

/// `<prefix>-<slug>`, e.g. `parliament-aktoer`.
pub fn entity_topic(prefix: &str, entity: &str) -> String {
    format!("{prefix}-{}", slug(entity))
}

/// A one-to-one processor's output: `<input>-processed`.
pub fn processed_topic(input: &str) -> String {
    format!("{input}-processed")
}

/// A processor with several inputs: `<prefix>-<name>-processed`.
pub fn named_processed_topic(prefix: &str, name: &str) -> String {
    format!("{prefix}-{name}-processed")
}

pub fn dlq_topic(prefix: &str) -> String {
    format!("{prefix}-dlq")
}

pub fn checkpoint_topic(prefix: &str) -> String {
    format!("{prefix}-cdc-checkpoints")
}

pub fn state_topic(prefix: &str) -> String {
    format!("{prefix}-cdc-state")
}

pub fn signals_topic(prefix: &str) -> String {
    format!("{prefix}-cdc-signals")
}

pub fn replay_log_topic(prefix: &str) -> String {
    format!("{prefix}-replay-log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        assert_eq!(entity_topic("parliament", "Sag"), "parliament-sag");
        assert_eq!(entity_topic("parliament", "Aktør"), "parliament-aktoer");
        assert_eq!(entity_topic("parliament", "Møde"), "parliament-moede");
        assert_eq!(
            entity_topic("parliament", "SagAktør"),
            "parliament-sagaktoer"
        );
        assert_eq!(slug("Afgørelsesårsag"), "afgoerelsesaarsag");
        assert_eq!(
            processed_topic("parliament-sag"),
            "parliament-sag-processed"
        );
        assert_eq!(
            named_processed_topic("parliament", "votes"),
            "parliament-votes-processed"
        );
        assert_eq!(dlq_topic("parliament"), "parliament-dlq");
        assert_eq!(checkpoint_topic("parliament"), "parliament-cdc-checkpoints");
    }
}
