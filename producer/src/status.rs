//! `oda-producer status`: what the checkpoints in Kafka say.

use chrono::Utc;
use oda_cdc_core::config::Settings;
use oda_cdc_core::odatime::{local_to_utc, parse_local};
use oda_cdc_core::topics;

use crate::restore;

/// Prints one line per entity: phase, cursor, lag.
pub fn print(settings: &Settings) -> anyhow::Result<()> {
    let checkpoints = restore::checkpoints(
        &settings.kafka,
        &topics::checkpoint_topic(&settings.kafka.topic_prefix),
    )?;
    let plans = crate::app::entity_plans(settings)?;
    println!(
        "{:<28} {:<10} {:<28} {:>10}",
        "ENTITY", "PHASE", "CURSOR", "LAG"
    );
    for plan in plans {
        let Some(checkpoint) = checkpoints.get(&plan.entity) else {
            println!("{:<28} {:<10} {:<28} {:>10}", plan.entity, "new", "-", "-");
            continue;
        };
        let phase = match &checkpoint.snapshot {
            Some(snapshot) => {
                let done = snapshot.ranges.iter().filter(|r| r.is_done()).count();
                format!("snap {done}/{}", snapshot.ranges.len())
            }
            None => "streaming".to_owned(),
        };
        let (cursor, lag) = match &checkpoint.cursor {
            Some(c) => {
                let lag = parse_local(&c.opdateringsdato)
                    .map(|t| {
                        humantime::format_duration(std::time::Duration::from_secs(
                            (Utc::now() - local_to_utc(t)).num_seconds().max(0) as u64,
                        ))
                        .to_string()
                    })
                    .unwrap_or_else(|_| "?".to_owned());
                (format!("{} #{}", c.opdateringsdato, c.id), lag)
            }
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "{:<28} {:<10} {:<28} {:>10}",
            plan.entity, phase, cursor, lag
        );
    }
    Ok(())
}
