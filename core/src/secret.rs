//! Values that must never reach a log line.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A secret string: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// Whether a librdkafka property carries a secret (passwords, keys,
/// tokens, JAAS configs), so logs show `***` in its place.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "token", "jaas", "key.pem", "private"]
        .iter()
        .any(|marker| name.contains(marker))
}

/// A URL as it may be shown: a user name or password in it becomes `***`.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("***");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // Not a URL: it may still hold `user:pass@`; show nothing of it.
        Err(_) if url.contains('@') => "***".to_owned(),
        Err(_) => url.to_owned(),
    }
}

/// A `kafka.properties` map as it may be shown: secret values as `***`.
pub fn redacted_properties(
    properties: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<&str, &str> {
    properties
        .iter()
        .map(|(name, value)| {
            let shown = if is_secret_property(name) {
                "***"
            } else {
                value.as_str()
            };
            (name.as_str(), shown)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_do_not_print() {
        assert_eq!(
            redact_url("https://svc:hunter2@registry.example.org/apis"),
            "https://***@registry.example.org/apis"
        );
        assert_eq!(redact_url("https://oda.ft.dk/api"), "https://oda.ft.dk/api");
        assert_eq!(redact_url("not a url with :hunter2@ in it"), "***");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_properties_are_recognised() {
        assert!(is_secret_property("sasl.password"));
        assert!(is_secret_property("ssl.key.password"));
        assert!(is_secret_property("sasl.oauthbearer.client.secret"));
        assert!(!is_secret_property("sasl.username"));
        assert!(!is_secret_property("linger.ms"));
    }
}
