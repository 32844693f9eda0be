//! `oda-producer`: polls every ODA entity set and publishes each change to
//! its topic in Kafka transactions (SPEC §2–§5). Built on
//! [`oda_cdc_core`]; the service itself lands with its own issue.
