//! `oda-passthrough`: copies every record of the entity topics to their
//! `-processed` topics unchanged. The smallest processor there is: the
//! baseline of the runner's benchmarks, a template for new processors, and
//! a way to feed a downstream system a filtered, exactly-once copy.

use oda_cdc_core::config::Settings;
use oda_model::topics::Topics;

use crate::runner::processor::{Context, Input, Output, ProcessError, Processor};

/// Copies records as they are.
#[derive(Debug, Default)]
pub struct Passthrough;

/// The entity topics of the configured entities (every captured set by
/// default), as the producer names them.
pub fn entity_inputs(settings: &Settings, topics: &Topics) -> Vec<String> {
    entity_topics(settings, topics)
        .into_iter()
        .map(|(_, topic)| topic)
        .collect()
}

/// The configured entities (their model names where the model knows
/// them) with their topics.
pub fn entity_topics(settings: &Settings, topics: &Topics) -> Vec<(String, String)> {
    let names: Vec<String> = match &settings.entities {
        Some(list) => list
            .iter()
            .map(|name| {
                oda_model::entity::entity_set_ci(name)
                    .map_or_else(|| name.clone(), |s| s.name.clone())
            })
            .collect(),
        None => oda_model::entity::entity_sets()
            .iter()
            .filter(|s| s.is_captured_by_default())
            .map(|s| s.name.clone())
            .collect(),
    };
    names
        .into_iter()
        .map(|name| {
            let topic = topics.entity(&name);
            (name, topic)
        })
        .collect()
}

impl Processor for Passthrough {
    const NAME: &'static str = "oda-passthrough";
    const METRICS_PORT: u16 = 9467;

    fn inputs(settings: &Settings, topics: &Topics) -> Vec<String> {
        entity_inputs(settings, topics)
    }

    async fn open(_context: &Context) -> anyhow::Result<Self> {
        Ok(Self)
    }

    /// Values are copied, never read: nothing to decode, nothing to refuse.
    fn decodes(&self, _topic: &str) -> bool {
        false
    }

    fn process(&mut self, input: &Input<'_>) -> Result<Vec<Output>, ProcessError> {
        Ok(vec![Output {
            topic: None,
            partition: None,
            key: input.key.map(str::to_owned),
            value: input.value.map(<[u8]>::to_vec),
            headers: input.headers.to_vec(),
        }])
    }
}
