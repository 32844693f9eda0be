//! Who this instance is in its group.
//!
//! Static membership (`group.instance.id`) lets a restarted instance take
//! its partitions back without a rebalance, but the broker then hands it
//! the assignment its predecessor had, whatever the new instance reads. So
//! the static id carries a digest of the input set: an instance restarted
//! on other inputs (another prefix, a changed entity list) is a new member
//! and gets a fresh assignment. Should an assignment still name topics the
//! instance does not read, it is stale: the session ends and the next one
//! joins under a new id.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use sha2::{Digest, Sha256};

/// How long the broker keeps a silent member before it rebalances its
/// partitions away, unless `kafka.properties` says otherwise: a stopped
/// static member (which does not leave its group) blocks a changed group
/// for at most this long; librdkafka's own default is 45 s.
pub(super) const SESSION_TIMEOUT_MS: &str = "10000";

/// This instance's static member identity.
#[derive(Debug)]
pub(super) struct Membership {
    base: String,
    inputs: BTreeSet<String>,
    /// Bumped after a stale assignment: the next session joins as a new member.
    renewals: AtomicU32,
}

impl Membership {
    /// `transactional_id` names the instance (`<group>-<instance>`).
    pub(super) fn new(transactional_id: &str, inputs: &[String]) -> Self {
        let inputs: BTreeSet<String> = inputs.iter().cloned().collect();
        let joined = inputs.iter().cloned().collect::<Vec<_>>().join("\n");
        let digest = hex::encode(Sha256::digest(joined.as_bytes()));
        Self {
            base: format!("{transactional_id}-{}", &digest[..8]),
            inputs,
            renewals: AtomicU32::new(0),
        }
    }

    /// The `group.instance.id` for the next session.
    pub(super) fn instance_id(&self) -> String {
        match self.renewals.load(Ordering::SeqCst) {
            0 => self.base.clone(),
            n => format!("{}-r{n}", self.base),
        }
    }

    /// Topics of `assignment` this instance does not read (sorted, once
    /// each): empty unless the assignment is stale.
    pub(super) fn foreign<'a>(&self, assignment: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let foreign: BTreeSet<&str> = assignment
            .into_iter()
            .filter(|topic| !self.inputs.contains(*topic))
            .collect();
        foreign.into_iter().map(str::to_owned).collect()
    }

    /// The current identity got a stale assignment: use another next time.
    pub(super) fn renew(&self) {
        self.renewals.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn the_id_follows_the_input_set_not_its_order() {
        let a = Membership::new("g-0", &inputs(&["p-sag", "p-aktoer"]));
        let same = Membership::new("g-0", &inputs(&["p-aktoer", "p-sag"]));
        let other = Membership::new("g-0", &inputs(&["q-sag", "q-aktoer"]));
        assert_eq!(a.instance_id(), same.instance_id());
        assert_ne!(a.instance_id(), other.instance_id());
        assert!(a.instance_id().starts_with("g-0-"));
    }

    #[test]
    fn a_stale_assignment_is_found_and_the_next_id_is_new() {
        let m = Membership::new("g-0", &inputs(&["q-sag"]));
        assert!(m.foreign(["q-sag", "q-sag"]).is_empty());
        assert_eq!(m.foreign(["p-sag", "q-sag", "p-sag"]), ["p-sag"]);
        let before = m.instance_id();
        m.renew();
        assert_ne!(m.instance_id(), before);
        assert!(m.instance_id().starts_with(&before));
    }
}
