//! What a tally needs besides the votes: the vote types, who is a party,
//! who belonged to which party when, and when each meeting was. Small sets
//! every instance holds whole (they are not partitioned like the votes),
//! fed from their entity topics by a follower thread.

use std::sync::Arc;

use dashmap::DashMap;
use oda_model::event::ChangeEvent;
use serde_json::{Map, Value};

/// The entity sets the tables are made of.
pub const TABLE_SETS: &[&str] = &["Stemmetype", "Aktørtype", "Aktør", "AktørAktør", "Møde"];

/// The Aktørtype of parliamentary party groups.
const PARTY_TYPE: &str = "Folketingsgruppe";

/// How a member voted, after the Stemmetype labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VoteKind {
    For,
    Imod,
    Hverken,
    Fravaerende,
    /// No type, or one whose label is none of the four.
    Ukendt,
}

impl VoteKind {
    pub const ALL: [VoteKind; 5] = [
        VoteKind::For,
        VoteKind::Imod,
        VoteKind::Hverken,
        VoteKind::Fravaerende,
        VoteKind::Ukendt,
    ];

    /// The name in the output document.
    pub fn as_str(self) -> &'static str {
        match self {
            VoteKind::For => "for",
            VoteKind::Imod => "imod",
            VoteKind::Hverken => "hverken",
            VoteKind::Fravaerende => "fravaerende",
            VoteKind::Ukendt => "ukendt",
        }
    }

    /// From a Stemmetype label as ODA writes it.
    fn from_label(label: &str) -> Self {
        match label.trim().to_lowercase().as_str() {
            "for" => VoteKind::For,
            "imod" => VoteKind::Imod,
            "hverken for eller imod" | "hverken" => VoteKind::Hverken,
            "fravær" | "fraværende" => VoteKind::Fravaerende,
            _ => VoteKind::Ukendt,
        }
    }

    /// The ids every source agrees on (1 For, 2 Imod, 3 Fravær, 4 Hverken
    /// for eller imod), for a type whose row has not arrived yet.
    fn from_known_id(id: i64) -> Self {
        match id {
            1 => VoteKind::For,
            2 => VoteKind::Imod,
            3 => VoteKind::Fravaerende,
            4 => VoteKind::Hverken,
            _ => VoteKind::Ukendt,
        }
    }
}

#[derive(Debug, Clone)]
struct Actor {
    typeid: Option<i64>,
    short: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Clone)]
struct Relation {
    from: i64,
    to: i64,
    /// Date parts (`YYYY-MM-DD`) of the source literals; `None` is open.
    start: Option<String>,
    end: Option<String>,
}

/// A resolved party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub id: i64,
    /// `gruppenavnkort` (`S`, `V`, `EL`), else the name.
    pub label: String,
}

#[derive(Debug, Default)]
struct Inner {
    /// Bumped by every change: tallies counted before it may be stale.
    version: std::sync::atomic::AtomicU64,
    vote_types: DashMap<i64, VoteKind>,
    actor_types: DashMap<i64, String>,
    actors: DashMap<i64, Actor>,
    relations: DashMap<i64, Relation>,
    /// Relation ids by the actors on either side.
    by_actor: DashMap<i64, Vec<i64>>,
    /// Møde id → the date part of `dato`.
    meetings: DashMap<i64, String>,
}

/// Bumps a version when dropped: at the end of a change.
struct Bump<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for Bump<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}

/// The tables; cheap to clone and share with the follower thread.
#[derive(Debug, Clone, Default)]
pub struct Tables(Arc<Inner>);

fn int(record: &Map<String, Value>, field: &str) -> Option<i64> {
    record.get(field).and_then(Value::as_i64)
}

fn text(record: &Map<String, Value>, field: &str) -> Option<String> {
    record
        .get(field)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The date part of a source date-time literal.
fn day(literal: &str) -> Option<String> {
    literal.get(..10).map(str::to_owned)
}

impl Tables {
    /// Applies one event of set `entity`; a delete (or tombstone: `event`
    /// `None`, `id` from the key) forgets the row.
    pub fn apply(&self, entity: &str, id: i64, event: Option<&ChangeEvent>) {
        let after = event.and_then(|e| e.after.as_ref());
        let t = &self.0;
        // Counted after the change, so a recount that sees the new
        // version also sees the new rows.
        let _bump = Bump(&t.version);
        match (entity, after) {
            ("Stemmetype", Some(r)) => {
                let kind = text(r, "type").map_or(VoteKind::Ukendt, |l| VoteKind::from_label(&l));
                t.vote_types.insert(id, kind);
            }
            ("Stemmetype", None) => {
                t.vote_types.remove(&id);
            }
            ("Aktørtype", Some(r)) => match text(r, "type") {
                Some(label) => {
                    t.actor_types.insert(id, label);
                }
                None => {
                    t.actor_types.remove(&id);
                }
            },
            ("Aktørtype", None) => {
                t.actor_types.remove(&id);
            }
            ("Aktør", Some(r)) => {
                t.actors.insert(
                    id,
                    Actor {
                        typeid: int(r, "typeid"),
                        short: text(r, "gruppenavnkort"),
                        name: text(r, "navn"),
                    },
                );
            }
            ("Aktør", None) => {
                t.actors.remove(&id);
            }
            ("AktørAktør", after) => {
                self.unlink(id);
                let relation = after.and_then(|r| {
                    Some(Relation {
                        from: int(r, "fraaktørid")?,
                        to: int(r, "tilaktørid")?,
                        start: text(r, "startdato").as_deref().and_then(day),
                        end: text(r, "slutdato").as_deref().and_then(day),
                    })
                });
                if let Some(relation) = relation {
                    for actor in [relation.from, relation.to] {
                        t.by_actor.entry(actor).or_default().push(id);
                    }
                    t.relations.insert(id, relation);
                }
            }
            ("Møde", Some(r)) => match text(r, "dato").as_deref().and_then(day) {
                Some(date) => {
                    t.meetings.insert(id, date);
                }
                None => {
                    t.meetings.remove(&id);
                }
            },
            ("Møde", None) => {
                t.meetings.remove(&id);
            }
            _ => {}
        }
    }

    fn unlink(&self, relation: i64) {
        if let Some((_, old)) = self.0.relations.remove(&relation) {
            for actor in [old.from, old.to] {
                if let Some(mut ids) = self.0.by_actor.get_mut(&actor) {
                    ids.retain(|&r| r != relation);
                }
            }
        }
    }

    /// Changes applied so far.
    pub fn version(&self) -> u64 {
        self.0.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// How a vote of Stemmetype `typeid` counts.
    pub fn vote_kind(&self, typeid: Option<i64>) -> VoteKind {
        match typeid {
            None => VoteKind::Ukendt,
            Some(id) => self
                .0
                .vote_types
                .get(&id)
                .map_or_else(|| VoteKind::from_known_id(id), |k| *k),
        }
    }

    /// The date (`YYYY-MM-DD`) of a meeting.
    pub fn meeting_date(&self, meeting: i64) -> Option<String> {
        self.0.meetings.get(&meeting).map(|d| d.clone())
    }

    fn is_party(&self, actor: i64) -> bool {
        self.0
            .actors
            .get(&actor)
            .and_then(|a| a.typeid)
            .and_then(|t| self.0.actor_types.get(&t).map(|l| l.as_str() == PARTY_TYPE))
            .unwrap_or(false)
    }

    /// The party `member` belonged to on `date`: a relation between the
    /// member and an actor of type Folketingsgruppe (in either direction;
    /// sources disagree on which side the group stands) whose dates hold
    /// the date. Of several, the one that began last wins (a member who
    /// changed party that day counts for the new one).
    pub fn party_of(&self, member: i64, date: &str) -> Option<Party> {
        let ids = self.0.by_actor.get(&member)?.clone();
        let mut best: Option<(Option<String>, i64)> = None;
        for id in ids {
            let Some(relation) = self.0.relations.get(&id).map(|r| r.clone()) else {
                continue;
            };
            let other = if relation.from == member {
                relation.to
            } else {
                relation.from
            };
            let started = relation.start.as_deref().is_none_or(|s| s <= date);
            let not_ended = relation.end.as_deref().is_none_or(|e| date <= e);
            if !(started && not_ended && self.is_party(other)) {
                continue;
            }
            let candidate = (relation.start.clone(), other);
            if best.as_ref().is_none_or(|b| candidate > *b) {
                best = Some(candidate);
            }
        }
        let (_, party) = best?;
        let actor = self.0.actors.get(&party)?;
        let label = actor
            .short
            .clone()
            .or_else(|| actor.name.clone())
            .unwrap_or_else(|| format!("aktør {party}"));
        Some(Party { id: party, label })
    }

    /// Rows held, for the start-up log.
    pub fn len(&self) -> usize {
        let t = &self.0;
        t.vote_types.len()
            + t.actor_types.len()
            + t.actors.len()
            + t.relations.len()
            + t.meetings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oda_model::event::Op;
    use serde_json::json;

    fn put(tables: &Tables, entity: &str, after: Value) {
        let id = after["id"].as_i64().unwrap_or_default();
        let event = ChangeEvent::new(
            Op::Create,
            entity,
            id,
            after.as_object().cloned(),
            None,
            "http://x",
            &oda_model::odatime::format_utc(chrono::Utc::now()),
        );
        tables.apply(entity, id, Some(&event));
    }

    fn parliament() -> Tables {
        let t = Tables::default();
        put(
            &t,
            "Aktørtype",
            json!({"id": 4, "type": "Folketingsgruppe"}),
        );
        put(&t, "Aktørtype", json!({"id": 5, "type": "Person"}));
        put(&t, "Aktørtype", json!({"id": 3, "type": "Udvalg"}));
        put(
            &t,
            "Aktør",
            json!({"id": 10, "typeid": 4, "gruppenavnkort": "S", "navn": "Socialdemokratiet"}),
        );
        put(
            &t,
            "Aktør",
            json!({"id": 11, "typeid": 4, "gruppenavnkort": "", "navn": "Venstre"}),
        );
        put(
            &t,
            "Aktør",
            json!({"id": 12, "typeid": 3, "gruppenavnkort": "FIU", "navn": "Finansudvalget"}),
        );
        put(
            &t,
            "Aktør",
            json!({"id": 100, "typeid": 5, "navn": "Mette Hansen"}),
        );
        // Member of S until 2020, then of V (the group on the `til` side),
        // and of a committee throughout.
        put(
            &t,
            "AktørAktør",
            json!({"id": 1, "fraaktørid": 100, "tilaktørid": 10,
            "startdato": "2015-06-18T00:00:00", "slutdato": "2020-03-01T00:00:00"}),
        );
        put(
            &t,
            "AktørAktør",
            json!({"id": 2, "fraaktørid": 11, "tilaktørid": 100,
            "startdato": "2020-03-01T00:00:00", "slutdato": null}),
        );
        put(
            &t,
            "AktørAktør",
            json!({"id": 3, "fraaktørid": 100, "tilaktørid": 12,
            "startdato": null, "slutdato": null}),
        );
        t
    }

    #[test]
    fn the_party_is_the_group_whose_dates_hold_the_vote_date() {
        let t = parliament();
        assert_eq!(
            t.party_of(100, "2019-05-01").map(|p| p.label),
            Some("S".into())
        );
        assert_eq!(
            t.party_of(100, "2020-03-01").map(|p| p.label),
            Some("Venstre".into()),
            "the newer membership wins on the day of the change; no short name → the name"
        );
        assert_eq!(t.party_of(100, "2014-01-01"), None, "before any membership");
        assert_eq!(t.party_of(999, "2019-05-01"), None, "unknown member");
    }

    #[test]
    fn a_changed_or_deleted_relation_leaves_the_index() {
        let t = parliament();
        put(
            &t,
            "AktørAktør",
            json!({"id": 1, "fraaktørid": 100, "tilaktørid": 12,
            "startdato": null, "slutdato": null}),
        );
        assert_eq!(
            t.party_of(100, "2019-05-01"),
            None,
            "S membership rewritten"
        );
        t.apply("AktørAktør", 2, None);
        assert_eq!(t.party_of(100, "2021-01-01"), None, "V membership deleted");
    }

    #[test]
    fn vote_kinds_come_from_labels_then_from_the_known_ids() {
        let t = Tables::default();
        put(&t, "Stemmetype", json!({"id": 1, "type": "For"}));
        put(
            &t,
            "Stemmetype",
            json!({"id": 7, "type": "Hverken for eller imod"}),
        );
        put(&t, "Stemmetype", json!({"id": 8, "type": "Noget nyt"}));
        assert_eq!(t.vote_kind(Some(1)), VoteKind::For);
        assert_eq!(t.vote_kind(Some(7)), VoteKind::Hverken);
        assert_eq!(t.vote_kind(Some(8)), VoteKind::Ukendt);
        assert_eq!(
            t.vote_kind(Some(3)),
            VoteKind::Fravaerende,
            "not loaded: known id"
        );
        assert_eq!(t.vote_kind(None), VoteKind::Ukendt);
    }
}
