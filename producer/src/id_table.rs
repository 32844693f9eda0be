//! A dense map from record id to hash prefix: the producer's per-id state
//! for every entity at ODA's full size (three million ids) in 12 bytes an
//! id, where a hash map of `i64 → u64` takes 16 plus its control byte and
//! up to half again in empty buckets.
//!
//! ODA's keys are `Int32` and mostly grow: ids live in two sorted parallel
//! vectors; a new id above the largest is appended, any other lands in a
//! small hash map that is merged into the vectors once it grows past a
//! sixteenth of them. A removed id keeps its slot as a tombstone until the
//! next merge. Ids outside `u32` (none in ODA) go to a plain map.

use std::collections::HashMap;

use crate::state::HashPrefix;

/// Marks a removed id in the sorted part.
const TOMBSTONE: HashPrefix = HashPrefix::MAX;
/// The recent map is merged once it holds more than this, or more than a
/// sixteenth of the sorted part.
const MIN_MERGE: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct IdTable {
    ids: Vec<u32>,
    hashes: Vec<HashPrefix>,
    /// Live (not tombstoned) entries of the sorted part.
    sorted_live: usize,
    recent: HashMap<u32, HashPrefix>,
    other: HashMap<i64, HashPrefix>,
}

/// A real prefix equal to the tombstone is stored one lower: it then
/// matches a hash it should not with probability 2⁻⁶⁴.
pub(crate) fn storable(hash: HashPrefix) -> HashPrefix {
    hash.min(TOMBSTONE - 1)
}

impl IdTable {
    fn slot(&self, id: u32) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    pub(crate) fn get(&self, id: i64) -> Option<HashPrefix> {
        let Ok(small) = u32::try_from(id) else {
            return self.other.get(&id).copied();
        };
        if let Some(hash) = self.recent.get(&small) {
            return Some(*hash);
        }
        self.slot(small)
            .map(|i| self.hashes[i])
            .filter(|h| *h != TOMBSTONE)
    }

    pub(crate) fn insert(&mut self, id: i64, hash: HashPrefix) {
        let hash = storable(hash);
        let Ok(small) = u32::try_from(id) else {
            self.other.insert(id, hash);
            return;
        };
        if let Some(slot) = self.slot(small) {
            if self.hashes[slot] == TOMBSTONE {
                self.sorted_live += 1;
            }
            self.hashes[slot] = hash;
        } else if self.recent.is_empty() && self.ids.last().is_none_or(|last| *last < small) {
            self.ids.push(small);
            self.hashes.push(hash);
            self.sorted_live += 1;
        } else {
            self.recent.insert(small, hash);
            if self.recent.len() > MIN_MERGE.max(self.ids.len() / 16) {
                self.merge();
            }
        }
    }

    pub(crate) fn remove(&mut self, id: i64) {
        let Ok(small) = u32::try_from(id) else {
            self.other.remove(&id);
            return;
        };
        if self.recent.remove(&small).is_none()
            && let Some(slot) = self.slot(small)
            && self.hashes[slot] != TOMBSTONE
        {
            self.hashes[slot] = TOMBSTONE;
            self.sorted_live -= 1;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.sorted_live + self.recent.len() + self.other.len()
    }

    /// Every id, ascending.
    pub(crate) fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = Vec::with_capacity(self.len());
        ids.extend(
            self.ids
                .iter()
                .zip(&self.hashes)
                .filter(|(_, h)| **h != TOMBSTONE)
                .map(|(id, _)| i64::from(*id)),
        );
        ids.extend(self.recent.keys().map(|id| i64::from(*id)));
        ids.extend(self.other.keys());
        ids.sort_unstable();
        ids
    }

    /// Folds the recent map into the sorted part, dropping tombstones.
    fn merge(&mut self) {
        let mut recent: Vec<(u32, HashPrefix)> = self.recent.drain().collect();
        recent.sort_unstable_by_key(|(id, _)| *id);
        let size = self.sorted_live + recent.len();
        let mut ids = Vec::with_capacity(size);
        let mut hashes = Vec::with_capacity(size);
        let mut old = self
            .ids
            .iter()
            .copied()
            .zip(self.hashes.iter().copied())
            .filter(|(_, h)| *h != TOMBSTONE)
            .peekable();
        let mut new = recent.into_iter().peekable();
        loop {
            let take_old = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((a, _)), Some((b, _))) => a < b,
            };
            let next = if take_old { old.next() } else { new.next() };
            if let Some((id, hash)) = next {
                ids.push(id);
                hashes.push(hash);
            }
        }
        self.sorted_live = ids.len();
        self.ids = ids;
        self.hashes = hashes;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn behaves_like_a_map_under_random_work() {
        let mut table = IdTable::default();
        let mut model: BTreeMap<i64, HashPrefix> = BTreeMap::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for step in 0..200_000u64 {
            // Mostly growing ids, some old ones, a few outside u32.
            let id = match rng.random_range(0..10) {
                0..=5 => i64::try_from(step).unwrap_or(0) * 3,
                6..=8 => rng.random_range(0..600_000),
                _ => rng.random_range(-5..0) * 1_000_000_000_000,
            };
            if rng.random_ratio(1, 8) {
                table.remove(id);
                model.remove(&id);
            } else {
                let hash = if rng.random_ratio(1, 1000) {
                    TOMBSTONE
                } else {
                    rng.random()
                };
                table.insert(id, hash);
                model.insert(id, storable(hash));
            }
            if step % 10_007 == 0 {
                assert_eq!(table.len(), model.len(), "step {step}");
            }
        }
        assert_eq!(table.len(), model.len());
        assert_eq!(table.ids(), model.keys().copied().collect::<Vec<_>>());
        for (id, hash) in &model {
            assert_eq!(table.get(*id), Some(*hash), "id {id}");
        }
        assert_eq!(table.get(1), model.get(&1).copied());
        assert!(table.recent.len() <= MIN_MERGE.max(table.ids.len() / 16));
    }

    #[test]
    fn twelve_bytes_an_id_when_ids_grow() {
        let mut table = IdTable::default();
        for id in 1..=1_000_000 {
            table.insert(id, 42);
        }
        assert!(table.recent.is_empty(), "growing ids append");
        let bytes = table.ids.capacity() * 4 + table.hashes.capacity() * 8;
        assert!(
            bytes < 2 * 12 * 1_000_000,
            "{bytes} bytes for a million ids"
        );
    }
}
