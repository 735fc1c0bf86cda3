//! Damaged task records a claim walks past.

use crate::error::Error;
use crate::model::TaskKey;
use std::collections::HashMap;
use std::sync::Mutex;

/// How many damaged records one [`Damaged`] remembers before it starts over (logging each
/// again once). A store holds a handful of hand-damaged records, not thousands.
const REMEMBERED: usize = 4096;

/// The damaged task records a store's `claimable` has met, each at the revision it was met at.
///
/// A record that no longer decodes (edited by hand, written by another tool) must not stop a
/// job's claims: every `claim_next` would meet it again at the head of the claim order and
/// fail. A store's `claimable` therefore leaves it out and goes on with the next candidate,
/// while `get` of that task still answers [`Error::Corrupt`], so the damage stays visible.
/// This set makes the warning appear once per record and revision instead of at every claim,
/// and lets a store that must fetch a candidate to read it (S3) skip the fetch while the
/// revision its index names is unchanged. Rewriting the task through the store (for example
/// `tasktrack retry` after repairing it by hand) gives it a new revision, and so makes it
/// claimable again; a store that reads or writes the task whole again calls
/// [`Damaged::forget`].
#[derive(Debug, Default)]
pub struct Damaged {
    /// The revision each damaged task was met at.
    seen: Mutex<HashMap<TaskKey, String>>,
}

impl Damaged {
    /// Notes that `key` at `revision` cannot be read because of `error`, and logs a warning the
    /// first time.
    pub fn note(&self, backend: &str, key: &TaskKey, revision: &str, error: &Error) {
        let first = {
            let mut seen = self.lock();
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
            seen.insert(key.clone(), revision.to_owned()).as_deref() != Some(revision)
        };
        if first {
            tracing::warn!(
                backend,
                task = %key,
                revision,
                "{backend}: claims skip damaged task {key} until it is rewritten: {error}"
            );
        }
    }

    /// Whether `key` at `revision` is known to be damaged.
    pub fn contains(&self, key: &TaskKey, revision: &str) -> bool {
        self.lock().get(key).is_some_and(|r| r == revision)
    }

    /// Forgets `key`: this process has read or written it whole since (it was repaired).
    pub fn forget(&self, key: &TaskKey) {
        let mut seen = self.lock();
        if !seen.is_empty() {
            seen.remove(key);
        }
    }

    /// A poisoned lock only means a panic elsewhere while it was held; the set stays usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskKey, String>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobName, TaskId};

    fn key(id: &str) -> TaskKey {
        TaskKey::new(JobName::new("j").unwrap(), TaskId::new(id).unwrap())
    }

    #[test]
    fn a_record_is_known_damaged_only_at_the_revision_it_was_met_at() {
        let damaged = Damaged::default();
        let error = Error::corrupt("here", "not JSON");
        damaged.note("test", &key("a"), "3", &error);
        assert!(damaged.contains(&key("a"), "3"));
        assert!(!damaged.contains(&key("a"), "4"), "rewritten since");
        assert!(!damaged.contains(&key("b"), "3"));
        damaged.forget(&key("a"));
        assert!(!damaged.contains(&key("a"), "3"), "read whole since");
    }
}
