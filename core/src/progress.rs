//! Progress of long work (snapshots, backfills, replays): a bar per item
//! on a terminal, a log line per update otherwise (contract.md#command-lines).

use std::collections::HashMap;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Progress of several named items.
#[derive(Debug)]
pub struct Progress {
    bars: Option<(MultiProgress, HashMap<String, ProgressBar>)>,
    unit: &'static str,
    quiet: bool,
}

impl Progress {
    /// One bar per name, counting `unit` (e.g. "rows", "records").
    pub fn new(names: &[String], unit: &'static str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                bars: None,
                unit,
                quiet: false,
            };
        }
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template(&format!(
            "{{prefix:>24}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bars = names
            .iter()
            .map(|name| {
                let bar = multi.add(
                    ProgressBar::new(0)
                        .with_style(style.clone())
                        .with_prefix(name.clone()),
                );
                (name.clone(), bar)
            })
            .collect();
        Self {
            bars: Some((multi, bars)),
            unit,
            quiet: false,
        }
    }

    /// Reports nothing.
    pub fn silent() -> Self {
        Self {
            bars: None,
            unit: "",
            quiet: true,
        }
    }

    /// `done` so far and about `remaining` to go for `name`.
    pub fn update(&self, name: &str, done: u64, remaining: u64, finished: bool) {
        match &self.bars {
            Some((_, bars)) => {
                if let Some(bar) = bars.get(name) {
                    bar.set_length(done + remaining.max(u64::from(!finished)));
                    bar.set_position(done);
                    if finished {
                        bar.finish();
                    }
                }
            }
            None if self.quiet => {}
            None => eprintln!(
                "{name}: {done} {unit}, about {remaining} left{}",
                if finished { ", done" } else { "" },
                unit = self.unit,
            ),
        }
    }
}
