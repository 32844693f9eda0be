//! Turning librdkafka's connection failures into a sentence that names the
//! setting to fix.
//!
//! A wrong password or an untrusted certificate reaches the caller only as
//! "broker transport failure"; the reason is in a log line librdkafka
//! wrote a moment before. Every client context hands its log lines and
//! errors to [`note`]; a start-up failure asks [`explain`] what was seen.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A security fault, by the settings that cause it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityFault {
    /// The broker refused the SASL user name or password.
    Credentials,
    /// This client does not trust the broker's certificate.
    BrokerCertificate,
    /// The broker does not trust (or did not get) this client's certificate.
    ClientCertificate,
    /// TLS spoken to a plaintext listener, or plaintext to a TLS one.
    Protocol,
}

impl SecurityFault {
    fn explanation(self) -> &'static str {
        match self {
            SecurityFault::Credentials => {
                "Kafka refused the SASL credentials: check kafka.properties.sasl.username and \
                 kafka.properties.sasl.password (and sasl.mechanism)"
            }
            SecurityFault::BrokerCertificate => {
                "the broker's TLS certificate is not trusted: check kafka.properties.ssl.ca.location \
                 (the CA that signed the brokers' certificates)"
            }
            SecurityFault::ClientCertificate => {
                "the broker does not accept this client's TLS certificate: check \
                 kafka.properties.ssl.certificate.location and kafka.properties.ssl.key.location \
                 (a certificate signed by a CA the brokers trust)"
            }
            SecurityFault::Protocol => {
                "the listener speaks another protocol: check kafka.properties.security.protocol \
                 against the port in kafka.brokers"
            }
        }
    }
}

/// What librdkafka says when each fault happens (lower case).
fn classify(message: &str) -> Option<SecurityFault> {
    let message = message.to_ascii_lowercase();
    if message.contains("sasl authentication error")
        || message.contains("invalid credentials")
        || message.contains("authentication failed during authentication")
    {
        Some(SecurityFault::Credentials)
    } else if message.contains("certificate verify failed") {
        Some(SecurityFault::BrokerCertificate)
    } else if message.contains("certificate unknown")
        || message.contains("certificate required")
        || message.contains("bad certificate")
        || message.contains("unknown ca")
    {
        Some(SecurityFault::ClientCertificate)
    } else if message.contains("wrong version number")
        || message.contains("disconnected while requesting apiversion")
    {
        Some(SecurityFault::Protocol)
    } else {
        None
    }
}

static LAST: Mutex<Option<(Instant, SecurityFault)>> = Mutex::new(None);

/// How long a noted fault stays an explanation: a failure long after it
/// has other causes.
const RELEVANT: Duration = Duration::from_secs(120);

/// Remembers the fault a librdkafka log line or error reports, if any.
pub fn note(message: &str) {
    if let Some(fault) = classify(message)
        && let Ok(mut last) = LAST.lock()
    {
        *last = Some((Instant::now(), fault));
    }
}

/// The last security fault librdkafka reported recently, as a sentence
/// naming the settings to check.
pub fn explain() -> Option<&'static str> {
    let last = LAST.lock().ok()?;
    let (at, fault) = (*last)?;
    (at.elapsed() < RELEVANT).then(|| fault.explanation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafkas_messages_name_the_setting() {
        let seen = [
            (
                "sasl_ssl://127.0.0.1:29094/bootstrap: SASL authentication error: Authentication \
                 failed during authentication due to invalid credentials with SASL mechanism \
                 SCRAM-SHA-512 (after 329ms in state AUTH_REQ)",
                SecurityFault::Credentials,
            ),
            (
                "ssl://127.0.0.1:29095/bootstrap: Receive failed: error:0A000416:SSL \
                 routines::sslv3 alert certificate unknown: SSL alert number 46",
                SecurityFault::ClientCertificate,
            ),
            (
                "ssl://127.0.0.1:29095/bootstrap: SSL handshake failed: error:0A000086:SSL \
                 routines::certificate verify failed: broker certificate could not be verified",
                SecurityFault::BrokerCertificate,
            ),
        ];
        for (message, fault) in seen {
            assert_eq!(classify(message), Some(fault), "{message}");
        }
        assert_eq!(
            classify("Connect to ipv4#127.0.0.1:9092 failed: Connection refused"),
            None
        );
        for fault in [SecurityFault::Credentials, SecurityFault::ClientCertificate] {
            assert!(fault.explanation().contains("kafka.properties."));
        }
    }
}
