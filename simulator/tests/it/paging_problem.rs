//! Naive `$skip` paging over a set that changes while it is read loses
//! and duplicates rows: the problem the producer's keyset cursor beats.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::helpers::{Sim, ids};

fn dokument_ids(sim: &Sim) -> BTreeSet<i64> {
    let world = sim.sim.state.world.read().expect("lock");
    world
        .store
        .table("Dokument")
        .expect("table")
        .ids()
        .map(i64::from)
        .collect()
}

#[tokio::test]
async fn skip_paging_under_mutations_loses_and_duplicates_rows() {
    let sim = Sim::start(|_| {}).await;
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    let start_ids = dokument_ids(&sim);
    let mut skip = 0;
    loop {
        let page = sim
            .json(&sim.api(&format!(
                "Dokument?$orderby=opdateringsdato,id&$skip={skip}&$top=100"
            )))
            .await;
        let rows = page["value"].as_array().expect("value").clone();
        if rows.is_empty() {
            break;
        }
        for id in ids(&rows) {
            *seen.entry(id).or_default() += 1;
        }
        skip += rows.len();
        // Between pages, rows already read get re-stamped to "now": they move
        // to the end of the order, shifting unread rows under the offset.
        sim.mutate(json!({"entity": "Dokument", "updates": 40}))
            .await;
    }
    let end_ids = dokument_ids(&sim);
    let duplicated = seen.values().filter(|n| **n > 1).count();
    // Rows present from start to end that offset paging never returned.
    let lost = start_ids
        .intersection(&end_ids)
        .filter(|id| !seen.contains_key(id))
        .count();
    assert!(
        duplicated > 0,
        "updated rows reappear at the end: duplicates"
    );
    assert!(lost > 0, "rows shift under the offset: losses");
}
