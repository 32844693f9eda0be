//! Entity sets the source answers 404 for. One such set is marked failed
//! (log, `/readyz`, `oda_cdc_entity_unserved`) and tried again every
//! interval while the others go on; only when no configured set is served
//! does the producer stop (exit 1), since it then has nothing to do.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// The sets answering 404 now, out of how many the producer runs.
#[derive(Debug)]
pub(crate) struct Unserved {
    sets: Mutex<BTreeSet<String>>,
    configured: usize,
}

impl Unserved {
    pub(crate) fn new(configured: usize) -> Self {
        Self {
            sets: Mutex::new(BTreeSet::new()),
            configured,
        }
    }

    fn sets(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        match self.sets.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Marks `entity`; returns whether it is new, and whether no
    /// configured set is served any more.
    pub(crate) fn mark(&self, entity: &str) -> (bool, bool) {
        let mut sets = self.sets();
        let new = sets.insert(entity.to_owned());
        (new, sets.len() >= self.configured)
    }

    /// `entity` answered again; returns whether it had been marked.
    pub(crate) fn clear(&self, entity: &str) -> bool {
        self.sets().remove(entity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_two_is_a_failed_entity_both_is_nothing_to_do() {
        let unserved = Unserved::new(2);
        assert_eq!(unserved.mark("Sambehandlinger"), (true, false));
        assert_eq!(unserved.mark("Sambehandlinger"), (false, false));
        assert!(unserved.clear("Sambehandlinger"));
        assert!(!unserved.clear("Sambehandlinger"));
        unserved.mark("Sambehandlinger");
        assert_eq!(unserved.mark("Sag"), (true, true));
    }
}
