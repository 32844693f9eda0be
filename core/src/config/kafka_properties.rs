//! Checks of the `kafka.properties` passthrough, at start and before any
//! network call: a property librdkafka does not know or a value it refuses,
//! a certificate or key file that cannot be read, and a property that would
//! quietly weaken the delivery guarantees are configuration errors (exit 2)
//! naming the key, not a failure minutes later or a silent loss.

use std::collections::BTreeMap;
use std::path::Path;

use rdkafka::ClientConfig;

/// Properties the services set themselves and a value that would weaken
/// what they promise, with why.
const GUARDED: &[(&str, &[&str], &str)] = &[
    (
        "enable.auto.commit",
        &["false"],
        "offsets are committed with the work they cover (in its transaction); an automatic commit \
         would mark records done that were never processed",
    ),
    (
        "isolation.level",
        &["read_committed"],
        "readers must not see aborted or open transactions",
    ),
    (
        "acks",
        &["all", "-1"],
        "a record is written when every in-sync replica has it; fewer acknowledgements can lose \
         acknowledged records when a broker dies",
    ),
    (
        "enable.idempotence",
        &["true"],
        "retries must not duplicate records (and transactions need it)",
    ),
];

/// Properties the settings own.
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.brokers"),
    ("transactional.id", "producer.transactional_id"),
    ("group.id", "consumer.group"),
];

/// A refused property: its name and why.
#[derive(Debug)]
pub(super) struct Refused {
    pub(super) property: String,
    pub(super) message: String,
}

/// Checks every property; the first refusal wins.
pub(super) fn check(properties: &BTreeMap<String, String>) -> Result<(), Refused> {
    for (name, value) in properties {
        let refuse = |message: String| Refused {
            property: name.clone(),
            message,
        };
        if let Some((_, setting)) = RESERVED.iter().find(|(p, _)| p == name) {
            return Err(refuse(format!("set through {setting} instead")));
        }
        if let Some((_, safe, why)) = GUARDED.iter().find(|(p, _, _)| p == name)
            && !safe.contains(&value.trim().to_ascii_lowercase().as_str())
        {
            return Err(refuse(format!(
                "`{value}` would weaken the delivery guarantees ({why}); leave it unset"
            )));
        }
        // librdkafka's own check of the name and the value, without
        // creating a client (so without a connection).
        if let Err(error) = ClientConfig::new().set(name, value).create_native_config() {
            return Err(refuse(librdkafka_reason(&error)));
        }
        if name.ends_with(".location") || name == "sasl.kerberos.keytab" {
            readable(Path::new(value)).map_err(refuse)?;
        }
    }
    Ok(())
}

/// A file a client will read at start (a CA, a certificate, a key).
/// (`ssl.ca.location` may name a directory of them; opening one works.)
pub(super) fn readable(path: &Path) -> Result<(), String> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| format!("{} cannot be read: {e}", path.display()))
}

fn librdkafka_reason(error: &rdkafka::error::KafkaError) -> String {
    match error {
        rdkafka::error::KafkaError::ClientConfig(_, description, _, _) => {
            format!("librdkafka refuses it: {description}")
        }
        other => format!("librdkafka refuses it: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn weakening_values_are_refused_safe_ones_pass() {
        for (name, value) in [
            ("enable.auto.commit", "true"),
            ("isolation.level", "read_uncommitted"),
            ("acks", "1"),
            ("enable.idempotence", "false"),
        ] {
            let refused = check(&props(&[(name, value)])).expect_err(name);
            assert_eq!(refused.property, name);
            assert!(refused.message.contains("weaken"), "{}", refused.message);
        }
        assert!(
            check(&props(&[
                ("acks", "all"),
                ("isolation.level", "read_committed")
            ]))
            .is_ok()
        );
    }

    #[test]
    fn librdkafka_refuses_unknown_names_and_bad_values_by_name() {
        let refused = check(&props(&[("linger.mss", "5")])).expect_err("unknown");
        assert_eq!(refused.property, "linger.mss");
        let refused = check(&props(&[("linger.ms", "soon")])).expect_err("bad value");
        assert_eq!(refused.property, "linger.ms");
        assert!(
            refused.message.contains("librdkafka"),
            "{}",
            refused.message
        );
        assert!(
            check(&props(&[
                ("linger.ms", "5"),
                ("security.protocol", "SASL_SSL")
            ]))
            .is_ok()
        );
    }

    #[test]
    fn certificate_files_must_be_readable() {
        let refused =
            check(&props(&[("ssl.ca.location", "/nonexistent/ca.pem")])).expect_err("missing");
        assert_eq!(refused.property, "ssl.ca.location");
        assert!(
            refused.message.contains("/nonexistent/ca.pem"),
            "{}",
            refused.message
        );
    }
}
