//! The votes of one repartition partition, and the two record shapes that
//! move them: what the repartition topic carries ([`Routed`]) and what the
//! changelog holds ([`Change`]), from which a partition's state is rebuilt
//! by whoever owns it next.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::runner::changelog::{BadChange, PartitionState as ChangelogState};

/// The fields of an Afstemning a tally shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Division {
    pub nummer: Option<i64>,
    pub typeid: Option<i64>,
    pub vedtaget: Option<bool>,
    pub moedeid: Option<i64>,
    pub sagstrinid: Option<i64>,
    pub opdateringsdato: Option<String>,
}

/// One member's vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub aktoer: i64,
    pub typeid: Option<i64>,
}

/// A record of the repartition topic, keyed and partitioned by Afstemning
/// (a retraction goes to every partition: a deleted Stemme no longer says
/// which Afstemning it belonged to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Routed {
    Vote {
        stemme: i64,
        afstemning: i64,
        #[serde(flatten)]
        vote: Vote,
    },
    /// Forget Stemme `stemme` unless it is counted under `keep`.
    Retract {
        stemme: i64,
        keep: Option<i64>,
    },
    Division {
        afstemning: i64,
        #[serde(flatten)]
        division: Division,
    },
    DivisionDeleted {
        afstemning: i64,
    },
}

/// A changelog entry: key and value (`None`: a tombstone).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PlacedVote {
    afstemning: i64,
    #[serde(flatten)]
    vote: Vote,
}

impl Change {
    fn vote(stemme: i64, afstemning: i64, vote: Vote) -> Self {
        Self {
            key: format!("stemme:{stemme}"),
            value: serde_json::to_vec(&PlacedVote { afstemning, vote }).ok(),
        }
    }

    fn vote_gone(stemme: i64) -> Self {
        Self {
            key: format!("stemme:{stemme}"),
            value: None,
        }
    }

    fn division(afstemning: i64, division: &Division) -> Self {
        Self {
            key: format!("afstemning:{afstemning}"),
            value: serde_json::to_vec(division).ok(),
        }
    }

    fn division_gone(afstemning: i64) -> Self {
        Self {
            key: format!("afstemning:{afstemning}"),
            value: None,
        }
    }
}

/// One Afstemning's state: its row once it arrived, its votes meanwhile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub division: Option<Division>,
    pub votes: BTreeMap<i64, Vote>,
}

/// The state of one repartition partition.
#[derive(Debug, Default)]
pub struct PartitionState {
    tallies: HashMap<i64, Tally>,
    /// Stemme id → the Afstemning it is counted under.
    placed: HashMap<i64, i64>,
}

impl PartitionState {
    /// Applies a routed record; returns the changelog entries to write and
    /// the Afstemninger whose tally changed.
    pub fn apply(&mut self, routed: Routed) -> (Vec<Change>, Vec<i64>) {
        match routed {
            Routed::Vote {
                stemme,
                afstemning,
                vote,
            } => {
                let mut touched = vec![afstemning];
                if let Some(old) = self.placed.insert(stemme, afstemning)
                    && old != afstemning
                {
                    self.forget_vote(old, stemme);
                    touched.push(old);
                }
                self.tallies
                    .entry(afstemning)
                    .or_default()
                    .votes
                    .insert(stemme, vote);
                (vec![Change::vote(stemme, afstemning, vote)], touched)
            }
            Routed::Retract { stemme, keep } => match self.placed.get(&stemme).copied() {
                Some(at) if Some(at) != keep => {
                    self.placed.remove(&stemme);
                    self.forget_vote(at, stemme);
                    (vec![Change::vote_gone(stemme)], vec![at])
                }
                _ => (Vec::new(), Vec::new()),
            },
            Routed::Division {
                afstemning,
                division,
            } => {
                let change = Change::division(afstemning, &division);
                self.tallies.entry(afstemning).or_default().division = Some(division);
                (vec![change], vec![afstemning])
            }
            Routed::DivisionDeleted { afstemning } => {
                if let Some(tally) = self.tallies.get_mut(&afstemning) {
                    tally.division = None;
                    if tally.votes.is_empty() {
                        self.tallies.remove(&afstemning);
                    }
                }
                (vec![Change::division_gone(afstemning)], vec![afstemning])
            }
        }
    }

    fn forget_vote(&mut self, afstemning: i64, stemme: i64) {
        if let Some(tally) = self.tallies.get_mut(&afstemning) {
            tally.votes.remove(&stemme);
            if tally.votes.is_empty() && tally.division.is_none() {
                self.tallies.remove(&afstemning);
            }
        }
    }

    pub fn tally(&self, afstemning: i64) -> Option<&Tally> {
        self.tallies.get(&afstemning)
    }

    /// The Afstemninger whose row is here (those with a tally).
    pub fn divisions(&self) -> impl Iterator<Item = i64> + '_ {
        self.tallies
            .iter()
            .filter(|(_, t)| t.division.is_some())
            .map(|(id, _)| *id)
    }

    /// Votes held for Afstemninger that have not arrived (yet).
    pub fn held_votes(&self) -> usize {
        self.tallies
            .values()
            .filter(|t| t.division.is_none())
            .map(|t| t.votes.len())
            .sum()
    }
}

impl ChangelogState for PartitionState {
    fn restore(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), BadChange> {
        let bad = |reason: String| BadChange {
            key: key.to_owned(),
            reason,
        };
        let (kind, id) = key
            .split_once(':')
            .and_then(|(kind, id)| Some((kind, id.parse::<i64>().ok()?)))
            .ok_or_else(|| bad("not `stemme:<id>` or `afstemning:<id>`".into()))?;
        let routed = match (kind, value) {
            ("stemme", Some(bytes)) => {
                let placed: PlacedVote =
                    serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
                Routed::Vote {
                    stemme: id,
                    afstemning: placed.afstemning,
                    vote: placed.vote,
                }
            }
            ("stemme", None) => Routed::Retract {
                stemme: id,
                keep: None,
            },
            ("afstemning", Some(bytes)) => Routed::Division {
                afstemning: id,
                division: serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?,
            },
            ("afstemning", None) => Routed::DivisionDeleted { afstemning: id },
            _ => return Err(bad(format!("unknown kind `{kind}`"))),
        };
        self.apply(routed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(stemme: i64, afstemning: i64, typeid: i64) -> Routed {
        Routed::Vote {
            stemme,
            afstemning,
            vote: Vote {
                aktoer: stemme * 10,
                typeid: Some(typeid),
            },
        }
    }

    fn division() -> Division {
        Division {
            nummer: Some(1),
            typeid: Some(1),
            vedtaget: Some(true),
            moedeid: Some(5),
            sagstrinid: None,
            opdateringsdato: Some("2024-01-01T10:00:00".into()),
        }
    }

    #[test]
    fn votes_wait_for_their_division_and_moves_leave_the_old_one() {
        let mut state = PartitionState::default();
        state.apply(vote(1, 7, 1));
        state.apply(vote(2, 7, 2));
        assert_eq!(
            state.held_votes(),
            2,
            "no Afstemning 7 yet: held, not dropped"
        );
        state.apply(Routed::Division {
            afstemning: 7,
            division: division(),
        });
        assert_eq!(state.held_votes(), 0);
        let (_, touched) = state.apply(vote(2, 8, 2));
        assert_eq!(touched, vec![8, 7]);
        assert_eq!(state.tally(7).map(|t| t.votes.len()), Some(1));
        let (changes, _) = state.apply(Routed::Retract {
            stemme: 2,
            keep: Some(8),
        });
        assert!(changes.is_empty(), "kept where it is counted");
        let (changes, touched) = state.apply(Routed::Retract {
            stemme: 2,
            keep: None,
        });
        assert_eq!(changes, vec![Change::vote_gone(2)]);
        assert_eq!(touched, vec![8]);
        assert!(state.tally(8).is_none(), "nothing left of 8");
    }

    #[test]
    fn the_changelog_rebuilds_the_same_state() {
        let mut state = PartitionState::default();
        let mut log = Vec::new();
        for routed in [
            vote(1, 7, 1),
            vote(2, 7, 2),
            Routed::Division {
                afstemning: 7,
                division: division(),
            },
            vote(3, 9, 3),
            vote(2, 9, 2),
            Routed::Retract {
                stemme: 1,
                keep: None,
            },
            Routed::DivisionDeleted { afstemning: 9 },
        ] {
            log.extend(state.apply(routed).0);
        }
        let mut rebuilt = PartitionState::default();
        for change in &log {
            rebuilt
                .restore(&change.key, change.value.as_deref())
                .expect("valid changelog");
        }
        assert_eq!(rebuilt.tallies, state.tallies);
        assert_eq!(rebuilt.placed, state.placed);
        assert!(rebuilt.restore("stemme:x", None).is_err());
    }

    #[test]
    fn routed_records_are_tagged_json() {
        let json = serde_json::to_value(vote(1, 7, 1)).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"kind": "vote", "stemme": 1, "afstemning": 7, "aktoer": 10, "typeid": 1})
        );
        let back: Routed = serde_json::from_value(json).expect("parse");
        assert_eq!(back, vote(1, 7, 1));
    }
}
