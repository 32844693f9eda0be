//! Merging the file, environment and flag layers into one TOML tree.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::ConfigError;
use super::keys::{self, ENV_ALIASES, KAFKA_PROPERTIES, KeyKind};
use oda_model::entity::entity_set_ci;

/// Prefix of the environment variables that carry configuration keys.
pub const ENV_PREFIX: &str = "ODA_CDC_";

/// Where a value came from, so an error can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Env(String),
    Flag(String),
    /// A check over the merged result.
    Merged,
    /// A check of the merged result against the Kafka cluster at start.
    Cluster,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Merged => f.write_str("the merged configuration"),
            Origin::Cluster => f.write_str("the configuration, checked against the Kafka cluster"),
        }
    }
}

/// The configuration tree under construction.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    root: Table,
    origins: BTreeMap<String, Origin>,
}

impl Layers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything a binary reads at start: the file (if any), the process
    /// environment, then `--set key=value` and `--kafka-property k=v` flags.
    pub fn standard(
        file: Option<&Path>,
        sets: &[String],
        kafka_properties: &[String],
    ) -> Result<Self, ConfigError> {
        let mut layers = Self::new();
        if let Some(path) = file {
            layers.add_file(path)?;
        }
        layers.add_env(std::env::vars())?;
        for text in sets {
            let (key, value) = split_pair(text, Origin::Flag("--set".into()))?;
            layers.set(key, value, Origin::Flag(format!("--set {key}")))?;
        }
        for text in kafka_properties {
            let (key, value) = split_pair(text, Origin::Flag("--kafka-property".into()))?;
            layers.set(
                &format!("{KAFKA_PROPERTIES}.{key}"),
                value,
                Origin::Flag(format!("--kafka-property {key}")),
            )?;
        }
        Ok(layers)
    }

    /// Merges a TOML file; every key in it must be known.
    pub fn add_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.add_toml(&text, path)
    }

    /// Merges TOML text as if read from `path`.
    pub fn add_toml(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: path.to_owned(),
                message: e.message().to_owned(),
            })?;
        let origin = Origin::File(path.to_owned());
        let mut leaves = Vec::new();
        flatten(&table, String::new(), &mut leaves);
        for (key, value) in leaves {
            let key = canonical_key(&key, &origin)?;
            self.insert(&key, value, origin.clone());
        }
        Ok(())
    }

    /// Merges the configuration carried by environment variables: the
    /// short aliases first, then the `ODA_CDC_` names, which win.
    pub fn add_env<I>(&mut self, vars: I) -> Result<(), ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        for (alias, key) in ENV_ALIASES {
            if let Some(value) = vars.get(*alias) {
                self.set(key, value, Origin::Env((*alias).to_owned()))?;
            }
        }
        for (name, value) in &vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if is_service_link(rest) {
                continue;
            }
            let origin = Origin::Env(name.clone());
            let key = env_key(rest);
            if let Some(target) = secret_file_target(rest, &key) {
                if let Some(direct) = vars
                    .keys()
                    .find(|n| n.strip_prefix(ENV_PREFIX) == Some(target))
                {
                    return Err(ConfigError::InvalidValue {
                        key: env_key(target),
                        origin,
                        message: format!("set either {direct} or {name}, not both"),
                    });
                }
                let contents =
                    read_secret_file(value).map_err(|message| ConfigError::InvalidValue {
                        key: env_key(target),
                        origin: origin.clone(),
                        message,
                    })?;
                self.set(&env_key(target), &contents, origin)?;
                continue;
            }
            self.set(&key, value, origin)?;
        }
        Ok(())
    }

    /// Sets one key from text, reading the text as the key's kind says.
    pub fn set(&mut self, key: &str, text: &str, origin: Origin) -> Result<(), ConfigError> {
        let key = canonical_key(key, &origin)?;
        let value = if key.starts_with(&format!("{KAFKA_PROPERTIES}.")) {
            Value::String(text.to_owned())
        } else {
            let kind =
                keys::lookup(&key)
                    .map(|k| k.kind)
                    .ok_or_else(|| ConfigError::UnknownKey {
                        key: key.clone(),
                        origin: origin.clone(),
                    })?;
            typed_value(&key, text, kind, &origin)?
        };
        self.insert(&key, value, origin);
        Ok(())
    }

    fn insert(&mut self, key: &str, value: Value, origin: Origin) {
        // `kafka.properties.<name>`: the property name keeps its dots.
        let path: Vec<String> = match key.strip_prefix(&format!("{KAFKA_PROPERTIES}.")) {
            Some(property) => vec!["kafka".into(), "properties".into(), property.into()],
            None => key.split('.').map(str::to_owned).collect(),
        };
        let mut table = &mut self.root;
        for part in &path[..path.len() - 1] {
            let entry = table
                .entry(part.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            let Value::Table(inner) = entry else {
                unreachable!("made a table just above")
            };
            table = inner;
        }
        table.insert(path[path.len() - 1].clone(), value);
        self.origins.insert(key.to_owned(), origin);
    }

    /// Where a key's current value came from.
    pub fn origin_of(&self, key: &str) -> Origin {
        // A serde path may point inside a key (a list element) or at a table.
        let mut probe = key.to_owned();
        loop {
            if let Some(origin) = self.origins.get(&probe) {
                return origin.clone();
            }
            if let Some(origin) = self
                .origins
                .iter()
                .find(|(k, _)| k.starts_with(&format!("{probe}.")))
                .map(|(_, o)| o.clone())
            {
                return origin;
            }
            match probe.rfind('.') {
                Some(i) => probe.truncate(i),
                None => return Origin::Merged,
            }
        }
    }

    /// Deserializes the merged tree, naming the key of the first bad value.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let value = Value::Table(self.root.clone());
        serde_path_to_error::deserialize(value).map_err(|err| {
            let key = err.path().to_string();
            let message = err.inner().message().to_owned();
            let key = if key == "." { String::new() } else { key };
            if let Some(field) = unknown_field(&message) {
                let key = if key.is_empty() {
                    field.to_owned()
                } else {
                    format!("{key}.{field}")
                };
                let origin = self.origin_of(&key);
                ConfigError::UnknownKey { key, origin }
            } else {
                let origin = self.origin_of(&key);
                ConfigError::InvalidValue {
                    key,
                    origin,
                    message,
                }
            }
        })
    }
}

/// `KAFKA__TOPIC_PREFIX` → `kafka.topic_prefix`; inside the passthrough
/// table underscores become dots (`KAFKA__PROPERTIES__LINGER_MS` →
/// `kafka.properties.linger.ms`), as librdkafka names use dots only.
/// `X_FILE` names a file holding the value of `X` (Docker and Kubernetes
/// mount secrets as files), unless `X_FILE` is itself a key
/// (`schema_registry.ca_file`). Returns the rest of `X`'s name.
fn secret_file_target<'a>(rest: &'a str, key: &str) -> Option<&'a str> {
    let target = rest.strip_suffix("_FILE")?;
    let is_property = |k: &str| k.starts_with(&format!("{KAFKA_PROPERTIES}."));
    // librdkafka has no property ending in `.file`.
    let own_key = is_property(key) && !key.ends_with(".file") || keys::lookup(key).is_some();
    let target_key = env_key(target);
    let known_target = is_property(&target_key) || keys::lookup(&target_key).is_some();
    (!own_key && known_target).then_some(target)
}

/// A secret file's contents without the line end editors and `echo` add.
fn read_secret_file(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read the file {path}: {error}"))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

fn env_key(rest: &str) -> String {
    let parts: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
    if parts.len() >= 3 && parts[0] == "kafka" && parts[1] == "properties" {
        let property = parts[2..].join("_").replace('_', ".");
        return format!("{KAFKA_PROPERTIES}.{property}");
    }
    parts.join(".")
}

/// Checks that a key is known and spells entity set names as ODA does,
/// whatever case the environment forced on them.
fn canonical_key(key: &str, origin: &Origin) -> Result<String, ConfigError> {
    if key.starts_with(&format!("{KAFKA_PROPERTIES}.")) && key.len() > KAFKA_PROPERTIES.len() + 1 {
        return Ok(key.to_owned());
    }
    let unknown = || ConfigError::UnknownKey {
        key: key.to_owned(),
        origin: origin.clone(),
    };
    let mut parts: Vec<String> = key.split('.').map(str::to_owned).collect();
    if parts.len() == 3 && parts[0] == "entity" {
        let set = entity_set_ci(&parts[1]).ok_or_else(unknown)?;
        parts[1] = set.name.clone();
    }
    let key = parts.join(".");
    keys::lookup(&key).ok_or_else(unknown)?;
    Ok(key)
}

fn typed_value(
    key: &str,
    text: &str,
    kind: KeyKind,
    origin: &Origin,
) -> Result<Value, ConfigError> {
    let invalid = |message: String| ConfigError::InvalidValue {
        key: key.to_owned(),
        origin: origin.clone(),
        message,
    };
    Ok(match kind {
        KeyKind::Text => Value::String(text.to_owned()),
        KeyKind::Integer => Value::Integer(
            text.trim()
                .parse()
                .map_err(|_| invalid(format!("`{text}` is not a whole number")))?,
        ),
        KeyKind::Float => Value::Float(
            text.trim()
                .parse()
                .map_err(|_| invalid(format!("`{text}` is not a number")))?,
        ),
        KeyKind::Boolean => Value::Boolean(match text.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(invalid(format!("`{text}` is not true or false"))),
        }),
        KeyKind::List => Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
    })
}

fn flatten(table: &Table, prefix: String, out: &mut Vec<(String, Value)>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            // The passthrough table's keys are librdkafka names with dots.
            Value::Table(inner) if key == KAFKA_PROPERTIES => {
                for (property, v) in inner {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    out.push((format!("{key}.{property}"), Value::String(text)));
                }
            }
            Value::Table(inner) => flatten(inner, key, out),
            other => out.push((key, other.clone())),
        }
    }
}

fn split_pair(text: &str, origin: Origin) -> Result<(&str, &str), ConfigError> {
    text.split_once('=')
        .map(|(k, v)| (k.trim(), v))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| ConfigError::Malformed {
            text: text.to_owned(),
            origin,
        })
}

/// serde's message for `deny_unknown_fields` starts with "unknown field `x`".
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}
/// Whether an `ODA_CDC_…` variable is one Kubernetes injects for a Service
/// whose name starts with `oda-cdc-` (`ODA_CDC_PRODUCER_SERVICE_HOST`,
/// `…_PORT_9464_TCP_ADDR`): not configuration, so not refused as an unknown
/// key. No key of ours ends that way.
fn is_service_link(rest: &str) -> bool {
    let upper = rest.to_ascii_uppercase();
    upper.ends_with("_SERVICE_HOST")
        || upper.contains("_SERVICE_PORT")
        || upper.ends_with("_PORT")
        || upper
            .split_once("_PORT_")
            .is_some_and(|(_, tail)| tail.starts_with(|c: char| c.is_ascii_digit()))
}
