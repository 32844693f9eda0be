//! What the producer last published per id (contract.md#topics: the state topic), kept
//! in memory: the content hash decides "skip" (unchanged) and the presence
//! of an id decides `c` or `u`.
//!
//! Only the first 64 bits of each SHA-256 are held, in a dense table
//! ([`IdTable`], 12 bytes an id), so every entity at ODA's full size (about
//! three million ids) takes about 36 MiB; a false "unchanged" would need a
//! 64-bit collision.

use std::collections::HashMap;

use crate::id_table::IdTable;

/// The remembered part of a content hash.
pub(crate) type HashPrefix = u64;

/// Reads the 64-bit prefix of a lowercase hex SHA-256.
pub(crate) fn prefix(hex: &str) -> Option<HashPrefix> {
    hex.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok())
}

/// Published state of every id of every entity.
#[derive(Debug, Default)]
pub(crate) struct IdState {
    entities: HashMap<String, IdTable>,
}

/// What publishing a record amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Same content as last published: skip.
    Unchanged,
    /// Never published: `c`.
    New,
    /// Published before with other content: `u`.
    Changed,
}

impl IdState {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The state topic's key, `<entity>:<id>`, into a buffer the caller
    /// reuses.
    pub(crate) fn write_key(out: &mut String, entity: &str, id: i64) {
        use std::fmt::Write as _;
        out.clear();
        let _ = write!(out, "{entity}:{id}");
    }

    /// Splits a state-topic key back.
    pub(crate) fn parse_key(key: &str) -> Option<(&str, i64)> {
        let (entity, id) = key.rsplit_once(':')?;
        Some((entity, id.parse().ok()?))
    }

    pub(crate) fn decide(&self, entity: &str, id: i64, hash: &str) -> Decision {
        match self.entities.get(entity).and_then(|m| m.get(id)) {
            None => Decision::New,
            Some(old) if Some(old) == prefix(hash).map(crate::id_table::storable) => {
                Decision::Unchanged
            }
            Some(_) => Decision::Changed,
        }
    }

    pub(crate) fn set(&mut self, entity: &str, id: i64, hash: &str) {
        let Some(p) = prefix(hash) else {
            return;
        };
        match self.entities.get_mut(entity) {
            Some(table) => table.insert(id, p),
            None => self
                .entities
                .entry(entity.to_owned())
                .or_default()
                .insert(id, p),
        }
    }

    pub(crate) fn remove(&mut self, entity: &str, id: i64) {
        if let Some(m) = self.entities.get_mut(entity) {
            m.remove(id);
        }
    }

    /// Every id published for an entity (for delete detection).
    pub(crate) fn ids(&self, entity: &str) -> Vec<i64> {
        self.entities
            .get(entity)
            .map(IdTable::ids)
            .unwrap_or_default()
    }

    pub(crate) fn len(&self, entity: &str) -> usize {
        self.entities.get(entity).map_or(0, IdTable::len)
    }

    pub(crate) fn total(&self) -> usize {
        self.entities.values().map(IdTable::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "037c9214eef74cc3887f3a4f085b4e17d76280dafd273b0ee160c09c4ba1cfd4";
    const H2: &str = "5d6f9e5e0f3c2a3a5e0a8b1f0b0bd5d5c0d1bd2c4d8a7c6b9f8f1e9a7f0c2e31";

    #[test]
    fn decides_create_update_and_skip() {
        let mut state = IdState::new();
        assert_eq!(state.decide("Sag", 1, H1), Decision::New);
        state.set("Sag", 1, H1);
        assert_eq!(state.decide("Sag", 1, H1), Decision::Unchanged);
        assert_eq!(state.decide("Sag", 1, H2), Decision::Changed);
        assert_eq!(
            state.decide("Aktør", 1, H1),
            Decision::New,
            "entities are separate"
        );
        state.remove("Sag", 1);
        assert_eq!(
            state.decide("Sag", 1, H1),
            Decision::New,
            "a deleted id comes back as new"
        );
    }

    #[test]
    fn keys_round_trip_with_danish_names() {
        let mut key = String::from("left over");
        IdState::write_key(&mut key, "Aktør", 18614);
        assert_eq!(key, "Aktør:18614");
        assert_eq!(IdState::parse_key(&key), Some(("Aktør", 18614)));
        assert_eq!(IdState::parse_key("garbage"), None);
    }
}
