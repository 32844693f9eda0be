//! Kafka plumbing: client configs built from [`KafkaSettings`], a client
//! context that routes librdkafka's logs into `tracing`, and topic
//! creation with the policies of contract.md#durability.
//!
//! [`KafkaSettings`]: crate::config::KafkaSettings

pub mod client;
pub mod context;
pub mod diagnosis;
pub mod reader;
pub mod record_size;
pub mod refusal;
pub mod topics;
pub mod transactions;
pub mod writer;

pub use self::client::{describe_config, redacted};
pub use self::context::LogContext;
pub use self::reader::{ReadError, TopicReader};
pub use self::record_size::{RecordLimits, TooLarge, record_size};
pub use self::refusal::{Refusals, Refused};
pub use self::topics::{EnsuredTopic, TopicError, TopicSpec, ensure_topics, partitions};
pub use self::transactions::{StallWatch, is_fenced, transactional_writer};
pub use self::writer::{Landed, WriterContext, delivered, hand_over};
