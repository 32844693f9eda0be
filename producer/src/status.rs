//! `oda-producer status`: what the checkpoints in Kafka say, and — when
//! the service answers on `metrics.addr` — its completeness, last good
//! poll and last error per entity.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use oda_cdc_core::config::Settings;
use oda_model::odatime::{local_to_utc, parse_local};
use oda_model::topics::Topics;

use crate::restore;

/// Per-entity figures scraped from the running service.
#[derive(Debug, Default)]
struct Live {
    completeness: HashMap<String, f64>,
    last_success: HashMap<String, f64>,
    failures: HashMap<String, f64>,
    /// `/readyz` lines that report a failure.
    problems: Vec<String>,
}

fn label(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_owned())
}

fn parse_metrics(text: &str) -> Live {
    let mut live = Live::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let Some(entity) = label(line, "entity") else {
            continue;
        };
        if line.starts_with("oda_cdc_completeness_ratio{") {
            live.completeness.insert(entity, value);
        } else if line.starts_with("oda_cdc_last_successful_poll_timestamp_seconds{") {
            live.last_success.insert(entity, value);
        } else if line.starts_with("oda_cdc_polls_total{")
            && label(line, "outcome").is_some_and(|o| o != "ok")
        {
            *live.failures.entry(entity).or_default() += value;
        }
    }
    live
}

async fn scrape(settings: &Settings) -> Option<Live> {
    let addr = oda_cdc_core::admin::address(settings.metrics.addr, crate::app::METRICS_PORT);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .ok()?;
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut live = parse_metrics(&text);
    if let Ok(response) = http.get(format!("http://{addr}/readyz")).send().await
        && let Ok(report) = response.text().await
    {
        live.problems = report
            .lines()
            .filter(|l| l.contains("failed"))
            .map(str::to_owned)
            .collect();
    }
    Some(live)
}

fn age(seconds: f64) -> String {
    let since = (Utc::now().timestamp() as f64 - seconds).max(0.0);
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs(since as u64))
    )
}

/// Prints one line per entity.
pub(crate) async fn print(settings: &Settings, topics: &Topics) -> anyhow::Result<()> {
    let kafka = settings.kafka.clone();
    let topic = topics.checkpoints();
    let checkpoints =
        tokio::task::spawn_blocking(move || restore::checkpoints(&kafka, &topic)).await??;
    let plans = crate::app::entity_plans(settings, topics)?;
    let live = scrape(settings).await;
    println!(
        "{:<24} {:<10} {:<32} {:>12} {:>9} {:>14} {:>8}",
        "ENTITY", "PHASE", "CURSOR", "LAG", "COMPLETE", "LAST POLL", "FAILED"
    );
    for plan in plans {
        let entity = plan.entity.as_str();
        let (phase, cursor, lag) = match checkpoints.get(entity) {
            None => ("new".to_owned(), "-".to_owned(), "-".to_owned()),
            Some(checkpoint) => {
                let phase = match &checkpoint.snapshot {
                    Some(s) if s.request_id.is_some() => "backfill".to_owned(),
                    Some(s) => format!(
                        "snap {}/{}",
                        s.ranges.iter().filter(|r| r.is_done()).count(),
                        s.ranges.len()
                    ),
                    None => "streaming".to_owned(),
                };
                match &checkpoint.cursor {
                    Some(c) => {
                        let lag = parse_local(&c.opdateringsdato)
                            .map(|t| {
                                let behind =
                                    (Utc::now() - local_to_utc(t)).num_seconds().max(0) as u64;
                                humantime::format_duration(Duration::from_secs(behind)).to_string()
                            })
                            .unwrap_or_else(|_| "?".to_owned());
                        (phase, format!("{} #{}", c.opdateringsdato, c.id), lag)
                    }
                    None => (phase, "-".to_owned(), "-".to_owned()),
                }
            }
        };
        let (complete, last, failed) = match &live {
            Some(live) => (
                live.completeness
                    .get(entity)
                    .map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0)),
                live.last_success
                    .get(entity)
                    .map_or("-".to_owned(), |t| age(*t)),
                live.failures
                    .get(entity)
                    .map_or("0".to_owned(), |n| format!("{n}")),
            ),
            None => ("?".to_owned(), "?".to_owned(), "?".to_owned()),
        };
        // Durations print in parts ("1year 2months …"): keep the largest two.
        let lag: String = lag.split(' ').take(2).collect::<Vec<_>>().join(" ");
        let last: String = if last.ends_with(" ago") {
            let parts: Vec<&str> = last.trim_end_matches(" ago").split(' ').take(2).collect();
            format!("{} ago", parts.join(" "))
        } else {
            last
        };
        println!(
            "{entity:<24} {phase:<10} {cursor:<32} {lag:>12} {complete:>9} {last:>14} {failed:>8}"
        );
    }
    match live {
        None => println!(
            "\n(the service does not answer on metrics.addr: completeness, last poll and errors unknown)"
        ),
        Some(live) if !live.problems.is_empty() => {
            println!("\nlast error: {}", live.problems.join("; "));
        }
        Some(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_service_metrics() {
        let text = "# HELP x\n\
            oda_cdc_completeness_ratio{entity=\"Sag\"} 0.998\n\
            oda_cdc_last_successful_poll_timestamp_seconds{entity=\"Sag\"} 1764000000\n\
            oda_cdc_polls_total{entity=\"Sag\",outcome=\"ok\"} 12\n\
            oda_cdc_polls_total{entity=\"Sag\",outcome=\"error\"} 2\n\
            oda_cdc_polls_total{entity=\"Sag\",outcome=\"invalid_page\"} 1\n";
        let live = parse_metrics(text);
        assert_eq!(live.completeness["Sag"], 0.998);
        assert_eq!(live.last_success["Sag"], 1_764_000_000.0);
        assert_eq!(live.failures["Sag"], 3.0);
    }
}
