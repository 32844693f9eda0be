//! How many copies of each kind of topic a cluster keeps (contract.md#durability),
//! and the deployment profile that says how loudly to complain about too few.
//!
//! The defaults follow the cluster (min(3, brokers) copies, writes acknowledged
//! by min(2, copies)), so one configuration serves a laptop's single broker and
//! a production cluster; an operator who wants a floor writes it down, and a
//! cluster that cannot give it is a start-up error naming the key instead of a
//! topic that silently keeps fewer copies.

use serde::Deserialize;

/// The kinds of topic whose durability is configured apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicClass {
    /// `<prefix>-<entity>` and copies made from them: the product itself.
    Entity,
    /// What a service restores itself from: the producer's checkpoints and
    /// per-id state, the processors' changelogs.
    State,
    /// `<topic>-processed` and the other processor outputs.
    Processed,
    /// The dead-letter topic.
    Dlq,
    /// Plumbing nobody subscribes to: signals, repartition topics, the replay log.
    Internal,
}

impl TopicClass {
    pub const ALL: [TopicClass; 5] = [
        TopicClass::Entity,
        TopicClass::State,
        TopicClass::Processed,
        TopicClass::Dlq,
        TopicClass::Internal,
    ];

    /// The class's name in configuration keys (`topics.<name>.…`).
    pub fn name(self) -> &'static str {
        match self {
            TopicClass::Entity => "entity",
            TopicClass::State => "state",
            TopicClass::Processed => "processed",
            TopicClass::Dlq => "dlq",
            TopicClass::Internal => "internal",
        }
    }

    pub fn replication_key(self) -> String {
        format!("topics.{}.replication_factor", self.name())
    }

    pub fn min_insync_key(self) -> String {
        format!("topics.{}.min_insync_replicas", self.name())
    }
}

/// One class's settings; `None` follows the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassDurability {
    pub replication_factor: Option<u16>,
    pub min_insync_replicas: Option<u16>,
}

/// `[topics.<class>]` for every class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsSettings {
    #[serde(default)]
    pub entity: ClassDurability,
    #[serde(default)]
    pub state: ClassDurability,
    #[serde(default)]
    pub processed: ClassDurability,
    #[serde(default)]
    pub dlq: ClassDurability,
    #[serde(default)]
    pub internal: ClassDurability,
}

/// What a topic of a class gets on a given cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    pub factor: i32,
    pub min_insync: i32,
}

/// A configured value the cluster cannot satisfy, or that could never work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` {message}")]
pub struct Unsatisfiable {
    pub key: String,
    pub message: String,
}

/// Copies kept when nothing is configured: three where the cluster has them.
const DEFAULT_FACTOR: i32 = 3;
/// Acknowledging replicas when nothing is configured: a write survives the
/// loss of any one broker.
const DEFAULT_MIN_INSYNC: i32 = 2;
/// Below this many copies the production profile complains.
pub const PRODUCTION_FACTOR: i32 = 3;

impl TopicsSettings {
    pub fn class(&self, class: TopicClass) -> ClassDurability {
        match class {
            TopicClass::Entity => self.entity,
            TopicClass::State => self.state,
            TopicClass::Processed => self.processed,
            TopicClass::Dlq => self.dlq,
            TopicClass::Internal => self.internal,
        }
    }

    /// The checks that need no cluster: at least one copy, and never more
    /// acknowledging replicas than copies.
    pub fn validate(&self) -> Result<(), Unsatisfiable> {
        for class in TopicClass::ALL {
            let settings = self.class(class);
            if settings.replication_factor == Some(0) {
                return Err(Unsatisfiable {
                    key: class.replication_key(),
                    message: "must be at least 1".to_owned(),
                });
            }
            if settings.min_insync_replicas == Some(0) {
                return Err(Unsatisfiable {
                    key: class.min_insync_key(),
                    message: "must be at least 1".to_owned(),
                });
            }
            if let (Some(factor), Some(min_insync)) =
                (settings.replication_factor, settings.min_insync_replicas)
                && min_insync > factor
            {
                return Err(above_factor(class, min_insync.into(), factor.into()));
            }
        }
        Ok(())
    }

    /// What a new topic of `class` gets on a cluster of `brokers` live brokers.
    pub fn resolve(&self, class: TopicClass, brokers: i32) -> Result<Replication, Unsatisfiable> {
        let settings = self.class(class);
        let brokers = brokers.max(1);
        let factor = match settings.replication_factor {
            Some(factor) if i32::from(factor) > brokers => {
                return Err(Unsatisfiable {
                    key: class.replication_key(),
                    message: format!(
                        "is {factor}, but the cluster has {brokers} broker(s) available: \
                         lower it, or start the missing brokers"
                    ),
                });
            }
            Some(factor) => i32::from(factor),
            None => brokers.min(DEFAULT_FACTOR),
        };
        let min_insync = match settings.min_insync_replicas {
            Some(min_insync) if i32::from(min_insync) > factor => {
                return Err(above_factor(class, min_insync.into(), factor));
            }
            Some(min_insync) => i32::from(min_insync),
            None => factor.min(DEFAULT_MIN_INSYNC),
        };
        Ok(Replication { factor, min_insync })
    }
}

fn above_factor(class: TopicClass, min_insync: i32, factor: i32) -> Unsatisfiable {
    Unsatisfiable {
        key: class.min_insync_key(),
        message: format!(
            "is {min_insync}, above the replication factor {factor} of `{}`: \
             no write to such a topic could ever be acknowledged",
            class.replication_key()
        ),
    }
}

/// Where the services run; production asks for more than a laptop can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Any cluster will do, a single broker included.
    #[default]
    Development,
    /// Every topic should keep at least three copies; fewer is warned about
    /// at every start, per topic.
    Production,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_entity(factor: Option<u16>, min_insync: Option<u16>) -> TopicsSettings {
        TopicsSettings {
            entity: ClassDurability {
                replication_factor: factor,
                min_insync_replicas: min_insync,
            },
            ..TopicsSettings::default()
        }
    }

    #[test]
    fn defaults_follow_the_cluster() {
        let settings = TopicsSettings::default();
        let on = |brokers| {
            settings
                .resolve(TopicClass::Dlq, brokers)
                .map(|r| (r.factor, r.min_insync))
        };
        assert_eq!(on(1), Ok((1, 1)));
        assert_eq!(on(2), Ok((2, 2)));
        assert_eq!(on(3), Ok((3, 2)));
        assert_eq!(on(5), Ok((3, 2)));
        assert_eq!(on(0), Ok((1, 1)));
    }

    #[test]
    fn a_factor_above_the_brokers_names_its_key() {
        let error = with_entity(Some(3), None)
            .resolve(TopicClass::Entity, 1)
            .expect_err("one broker cannot keep three copies");
        assert_eq!(error.key, "topics.entity.replication_factor");
        assert!(error.message.contains("1 broker"), "{error}");
        // Other classes keep their defaults.
        assert!(
            with_entity(Some(3), None)
                .resolve(TopicClass::State, 1)
                .is_ok()
        );
    }

    #[test]
    fn a_configured_factor_caps_the_default_min_insync() {
        let resolved = with_entity(Some(1), None).resolve(TopicClass::Entity, 3);
        assert_eq!(
            resolved,
            Ok(Replication {
                factor: 1,
                min_insync: 1
            })
        );
    }

    #[test]
    fn min_insync_above_the_factor_is_refused_with_or_without_a_cluster() {
        let settings = with_entity(Some(2), Some(3));
        assert_eq!(
            settings.validate().map_err(|e| e.key),
            Err("topics.entity.min_insync_replicas".to_owned())
        );
        let on_one = with_entity(None, Some(2)).resolve(TopicClass::Entity, 1);
        assert_eq!(
            on_one.map_err(|e| e.key),
            Err("topics.entity.min_insync_replicas".to_owned())
        );
    }

    #[test]
    fn zero_is_refused() {
        assert_eq!(
            with_entity(Some(0), None).validate().map_err(|e| e.key),
            Err("topics.entity.replication_factor".to_owned())
        );
        assert_eq!(
            with_entity(None, Some(0)).validate().map_err(|e| e.key),
            Err("topics.entity.min_insync_replicas".to_owned())
        );
    }
}
