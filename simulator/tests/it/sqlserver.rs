//! `--sqlserver-datetime`: exact `eq` against a shown millisecond misses
//! rows, as it does on the real server; a range around it finds them.

use crate::helpers::{Sim, ids};

#[tokio::test]
async fn eq_on_a_shown_millisecond_misses_rows_and_ranges_find_them() {
    let sim = Sim::start(|c| c.precision = oda_sim::time::Precision::SqlServer).await;
    let page = sim
        .json(&sim.api("Sag?$orderby=opdateringsdato,id&$top=100"))
        .await;
    let rows = page["value"].as_array().expect("value").clone();
    let mut missed = 0;
    let mut checked = 0;
    for row in &rows {
        let ts = row["opdateringsdato"].as_str().expect("ts");
        let id = row["id"].as_i64().expect("id");
        let Some((_, fraction)) = ts.split_once('.') else {
            continue;
        };
        if fraction.len() != 3 || fraction.ends_with('0') {
            continue;
        }
        checked += 1;
        let eq = sim
            .json(&sim.api(&format!("Sag?$filter=opdateringsdato eq datetime'{ts}'")))
            .await;
        if !ids(eq["value"].as_array().expect("value")).contains(&id) {
            missed += 1;
        }
        // A one-millisecond window around the shown value always finds it.
        let (lo, hi) = window(ts);
        let range = sim
            .json(&sim.api(&format!(
                "Sag?$filter=opdateringsdato gt datetime'{lo}' and opdateringsdato lt datetime'{hi}'"
            )))
            .await;
        assert!(
            ids(range["value"].as_array().expect("value")).contains(&id),
            "{ts} within ({lo}, {hi})"
        );
    }
    assert!(checked > 5, "need values ending in 3 or 7, had {checked}");
    assert_eq!(
        missed, checked,
        "every value ending in 3 or 7 is off its literal by a third of a millisecond"
    );
}

#[tokio::test]
async fn millis_mode_matches_the_shown_value_exactly() {
    let sim = Sim::start(|_| {}).await;
    let page = sim
        .json(&sim.api("Sag?$orderby=opdateringsdato,id&$top=30"))
        .await;
    for row in page["value"].as_array().expect("value") {
        let ts = row["opdateringsdato"].as_str().expect("ts");
        let eq = sim
            .json(&sim.api(&format!("Sag?$filter=opdateringsdato eq datetime'{ts}'")))
            .await;
        assert!(
            ids(eq["value"].as_array().expect("value")).contains(&row["id"].as_i64().expect("id"))
        );
    }
}

/// The literals one millisecond either side of a shown value.
fn window(ts: &str) -> (String, String) {
    let t = oda_sim::time::SimTime::parse(ts).expect("ts");
    (t.plus_millis(-1).to_string(), t.plus_millis(1).to_string())
}
