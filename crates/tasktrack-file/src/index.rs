//! The in-memory view of one job's index: what each task's file says about claim order and
//! counts, kept in step with the journal (see [`crate::journal`]).
//!
//! Every process rebuilds this view from the journal it shares with the other processes, then
//! follows the journal's tail: claims and counts never open a task file they do not need.

use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tasktrack_core::{CountRow, Cursor, Status, Task, TaskId, TaskQuery, Timestamp};

/// What the index knows of one task: the fields claims, counts and listings order and filter by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The task id.
    pub id: TaskId,
    /// The task's version when this entry was written.
    pub version: u64,
    /// Its status.
    pub status: Status,
    /// Its pipeline stage.
    pub stage: Option<String>,
    /// Its priority.
    pub priority: i32,
    /// [`Task::claimable_at`].
    pub claimable_at: Option<Timestamp>,
    /// Its `updated_at` (listing order).
    pub updated_at: Timestamp,
}

impl Entry {
    /// The entry describing `task`.
    pub fn of(task: &Task) -> Self {
        Entry {
            id: task.id.clone(),
            version: task.version,
            status: task.status,
            stage: task.stage.clone(),
            priority: task.priority,
            claimable_at: task.claimable_at(),
            updated_at: task.updated_at,
        }
    }

    /// Where the task sorts in claim order, or `None` if it is never claimable as it is.
    pub fn claim_key(&self) -> Option<ClaimKey> {
        self.claimable_at
            .map(|at| (Reverse(self.priority), at, self.id.clone()))
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// The task file says this: a snapshot's line, written only once every task file is on disk.
    Put(Entry),
    /// The task file now says this, in full (or is about to: until the next `commit`, an
    /// intent). Every transaction writes these, so the journal can restore any task file whose
    /// write a power loss undid (see [`crate::journal`]).
    Write(Box<Task>),
    /// The task file is gone (or about to be).
    Delete {
        /// The task id.
        id: TaskId,
    },
    /// The job record is being written (an intent, so a crash's scratch files get cleaned).
    Job,
    /// Every record since the previous `commit` is on disk in the task files.
    Commit,
}

/// Claim order: priority descending, then claimable instant, then id.
pub type ClaimKey = (Reverse<i32>, Timestamp, TaskId);

/// The index of one job, as of some position in its journal.
#[derive(Debug, Default)]
pub struct JobIndex {
    /// The journal generation this view was read from (changes when the journal is rewritten).
    pub generation: String,
    /// Bytes of the journal consumed.
    pub offset: u64,
    /// Lines of the journal consumed (for error messages and the compaction threshold).
    pub lines: u64,
    /// Ids written by records after the last `commit`: an unfinished transaction.
    pub uncommitted: Vec<TaskId>,
    /// Whether any record follows the last `commit`.
    pub open: bool,
    /// After a compaction failed: no other is tried before the journal has this many lines.
    pub compact_after: u64,
    entries: HashMap<TaskId, Entry>,
    claimable: BTreeSet<ClaimKey>,
    claimable_by_stage: HashMap<String, BTreeSet<ClaimKey>>,
    counts: BTreeMap<(Option<String>, Status), u64>,
}

impl JobIndex {
    /// An empty view of journal `generation`.
    pub fn new(generation: String) -> Self {
        JobIndex {
            generation,
            ..JobIndex::default()
        }
    }

    /// Applies one journal record.
    pub fn apply(&mut self, record: Record) {
        self.lines += 1;
        match record {
            Record::Write(task) => self.put(Entry::of(&task)),
            Record::Put(entry) => self.put(entry),
            Record::Delete { id } => {
                self.open = true;
                self.uncommitted.push(id.clone());
                self.remove(&id);
            }
            Record::Job => self.open = true,
            Record::Commit => {
                self.open = false;
                self.uncommitted.clear();
            }
        }
    }

    /// Records that the task's file says `entry` (as part of the open transaction).
    fn put(&mut self, entry: Entry) {
        self.open = true;
        self.uncommitted.push(entry.id.clone());
        self.remove(&entry.id);
        self.insert(entry);
    }

    fn insert(&mut self, entry: Entry) {
        if let Some(key) = entry.claim_key() {
            if let Some(stage) = &entry.stage {
                self.claimable_by_stage
                    .entry(stage.clone())
                    .or_default()
                    .insert(key.clone());
            }
            self.claimable.insert(key);
        }
        *self
            .counts
            .entry((entry.stage.clone(), entry.status))
            .or_default() += 1;
        self.entries.insert(entry.id.clone(), entry);
    }

    fn remove(&mut self, id: &TaskId) {
        let Some(old) = self.entries.remove(id) else {
            return;
        };
        if let Some(key) = old.claim_key() {
            self.claimable.remove(&key);
            if let Some(stage) = &old.stage
                && let Some(set) = self.claimable_by_stage.get_mut(stage)
            {
                set.remove(&key);
                if set.is_empty() {
                    self.claimable_by_stage.remove(stage);
                }
            }
        }
        let slot = (old.stage, old.status);
        if let Some(n) = self.counts.get_mut(&slot) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.counts.remove(&slot);
            }
        }
    }

    /// Number of tasks known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index knows task `id`.
    pub fn contains(&self, id: &TaskId) -> bool {
        self.entries.contains_key(id)
    }

    /// Every entry, ordered by id (for snapshots).
    pub fn entries_by_id(&self) -> Vec<&Entry> {
        let mut all: Vec<&Entry> = self.entries.values().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Claim keys of the tasks claimable at `now` (at `stage`, if given), in claim order. (A
    /// session adds its staged changes: [`crate::session::Session::claimable`].)
    pub fn claimable(
        &self,
        stage: Option<&str>,
        now: Timestamp,
    ) -> impl Iterator<Item = &ClaimKey> + '_ {
        let set = match stage {
            None => Some(&self.claimable),
            Some(s) => self.claimable_by_stage.get(s),
        };
        set.into_iter().flat_map(move |set| due(set, now))
    }

    /// The count rows for [`tasktrack_core::Counts::from_raw`].
    pub fn counts(&self) -> Vec<CountRow> {
        self.counts
            .iter()
            .map(|((stage, status), n)| (stage.clone(), Some(*status), *n))
            .collect()
    }

    /// The positions (`updated_at`, id) of up to `limit` tasks matching `query`'s filters and
    /// cursor, in the query's order, decided from the index alone (the caller reads only those
    /// files, and places one that does not decode at its position here).
    pub fn list(&self, query: &TaskQuery, limit: usize) -> Vec<Cursor> {
        let mut hits: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| {
                (query.statuses.is_empty() || query.statuses.contains(&e.status))
                    && query
                        .stage
                        .as_ref()
                        .is_none_or(|s| e.stage.as_ref() == Some(s))
                    && query
                        .id_prefix
                        .as_ref()
                        .is_none_or(|p| e.id.as_str().starts_with(p.as_str()))
                    && query.updated_after.is_none_or(|t| e.updated_at >= t)
                    && query.updated_before.is_none_or(|t| e.updated_at < t)
                    && query.after.as_ref().is_none_or(|c| {
                        let (pos, cur) =
                            ((e.updated_at, e.id.as_str()), (c.updated_at, c.id.as_str()));
                        if query.newest_first {
                            pos < cur
                        } else {
                            pos > cur
                        }
                    })
            })
            .collect();
        let newest_first = query.newest_first;
        let order = move |a: &&Entry, b: &&Entry| {
            let ord = (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id));
            if newest_first { ord.reverse() } else { ord }
        };
        // Only the first `limit` need sorting: select them in O(n), then sort those.
        if hits.len() > limit {
            hits.select_nth_unstable_by(limit, order);
            hits.truncate(limit);
        }
        hits.sort_by(order);
        hits.into_iter()
            .take(limit)
            .map(|e| Cursor {
                updated_at: e.updated_at,
                id: e.id.clone(),
            })
            .collect()
    }
}

/// The keys of `set` (in claim order) due at `now`. Within one priority the keys are in
/// `claimable_at` order, so the due ones come first: the walk takes them, then jumps to the next
/// priority instead of reading the rest, the tasks not due yet (waiting for a `not_before`, a
/// backoff or a lease's expiry), which an idle claim would otherwise read one by one under the
/// job's lock.
fn due(set: &BTreeSet<ClaimKey>, now: Timestamp) -> impl Iterator<Item = &ClaimKey> + '_ {
    let mut keys = set.range::<ClaimKey, _>(..);
    std::iter::from_fn(move || {
        loop {
            let key = keys.next()?;
            if key.1 <= now {
                return Some(key);
            }
            // The first key of the next lower priority: no key sorts below the earliest instant
            // and the lowest id (a single space: ids hold no control characters).
            let lower = key.0.0.checked_sub(1)?;
            let lowest_id = TaskId::new(" ").ok()?;
            keys = set.range((Reverse(lower), Timestamp::from_millis(i64::MIN), lowest_id)..);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk that jumps past the keys not due yet yields exactly the due keys of a plain
    /// walk, in the same order, across priorities (the extreme ones included) and ties.
    #[test]
    fn the_due_walk_yields_what_a_full_walk_filters() {
        let mut set = BTreeSet::new();
        let priorities = [i32::MAX, 7, 7, 0, -3, i32::MIN];
        for (n, priority) in priorities.iter().enumerate() {
            for (m, at) in [5, 10, 10, 20, 30].iter().enumerate() {
                let id = TaskId::new(format!("t{n}-{m}")).unwrap_or_else(|e| panic!("{e}"));
                set.insert((Reverse(*priority), Timestamp::from_millis(*at), id));
            }
        }
        set.insert((
            Reverse(1),
            Timestamp::from_millis(1),
            TaskId::new(" ").unwrap_or_else(|e| panic!("{e}")),
        ));
        for now in [0, 5, 10, 25, 100] {
            let now = Timestamp::from_millis(now);
            let walked: Vec<_> = due(&set, now).collect();
            let filtered: Vec<_> = set.iter().filter(|k| k.1 <= now).collect();
            assert_eq!(walked, filtered, "at {now:?}");
        }
    }
}
