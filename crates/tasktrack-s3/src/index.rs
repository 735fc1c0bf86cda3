//! The per-job index: what `claim_next`, `counts` and `list` read instead of every task.
//!
//! Each job's index is split over 8 JSON objects by a hash of the task id (the shards,
//! `<prefix>/<job>/.index-<k>.json`, see [`crate::indexer`]); each maps its task ids to a compact
//! entry (status, priority, claimable-at, version, updated-at, stage, created-at; about 65 bytes
//! with the id). A shard is written only with conditional PUTs on its ETag, so concurrent
//! writers never lose each other's changes; each change is an [`Update`] computed from a task
//! document that was *already written*, and applying it is idempotent and ordered by the task's
//! [`Rev`] (creation time, then `version`): an entry is only ever replaced by a later state of
//! the task, a later version or a later incarnation (a task deleted and created again under its
//! id starts again at version 1, but is created later). Applying updates late, twice or out of
//! order therefore converges on the newest state of every task.
//!
//! This module is pure data (no I/O), so its rules are unit-tested here.

use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BTreeMap;
use tasktrack_core::{CountRow, Cursor, Status, Task, TaskQuery, Timestamp};

/// One task in the index: `[status code, priority, claimable_at ms | null, version,
/// updated_at ms, stage | null, created_at ms]` (an array keeps the object small). An entry
/// written before entries carried `created_at` reads as 0 there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry(
    pub u8,
    pub i32,
    pub Option<i64>,
    pub u64,
    pub i64,
    pub Option<String>,
    #[serde(default)] pub i64,
);

/// Which state of a task an entry (or a removal) describes: its creation time in ms and its
/// version. The version orders the states of one incarnation; the creation time tells a task
/// from one deleted and created again under its id, whose version starts again at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rev {
    /// `created_at` in ms (0: unknown, an entry from before entries carried it).
    pub created: i64,
    /// `version`.
    pub version: u64,
}

impl Rev {
    /// The revision of `task`.
    pub fn of(task: &Task) -> Self {
        Rev {
            created: task.created_at.as_millis(),
            version: task.version,
        }
    }

    /// Whether this is a later state than `other`: a later incarnation, or a later version of
    /// the same one. Where either creation time is unknown, by version alone.
    pub fn is_after(self, other: Rev) -> bool {
        if self.created == 0 || other.created == 0 || self.created == other.created {
            self.version > other.version
        } else {
            self.created > other.created
        }
    }
}

impl std::fmt::Display for Rev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.version, self.created)
    }
}

impl Entry {
    /// The entry describing `task`.
    pub fn of(task: &Task) -> Self {
        Entry(
            task.status.code(),
            task.priority,
            task.claimable_at().map(Timestamp::as_millis),
            task.version,
            task.updated_at.as_millis(),
            task.stage.clone(),
            task.created_at.as_millis(),
        )
    }

    /// Which state of its task this entry describes.
    pub fn rev(&self) -> Rev {
        Rev {
            created: self.6,
            version: self.3,
        }
    }

    /// The status, if the code is known.
    pub fn status(&self) -> Option<Status> {
        Status::from_code(self.0)
    }

    /// The task version this entry was made from.
    pub fn version(&self) -> u64 {
        self.3
    }

    fn stage(&self) -> Option<&str> {
        self.5.as_deref()
    }

    /// The task's place in the claim order, `(Reverse(priority), claimable_at ms)`, if it may be
    /// claimable at `now` (at `stage`, if given); `None` if not.
    pub fn claim_key(&self, stage: Option<&str>, now: Timestamp) -> Option<(Reverse<i32>, i64)> {
        match self.2 {
            Some(at) if at <= now.as_millis() && (stage.is_none() || self.stage() == stage) => {
                Some((Reverse(self.1), at))
            }
            _ => None,
        }
    }
}

/// A change to apply to the index, made from a task document that has been written.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The task now looks like this entry.
    Put(String, Entry),
    /// The task at this revision was deleted.
    Remove(String, Rev),
}

impl Update {
    /// The update for a task that was just created or replaced.
    pub fn put(task: &Task) -> Self {
        Update::Put(task.id.as_str().to_owned(), Entry::of(task))
    }

    /// The update for a task that was just deleted as `task`.
    pub fn remove(task: &Task) -> Self {
        Update::Remove(task.id.as_str().to_owned(), Rev::of(task))
    }

    /// The task id it is about.
    pub fn id(&self) -> &str {
        match self {
            Update::Put(id, _) | Update::Remove(id, _) => id,
        }
    }
}

/// The index document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Format version of this document.
    #[serde(default = "format")]
    pub v: u32,
    /// Entries by task id (a BTreeMap, so equal content always serializes to equal bytes).
    pub tasks: BTreeMap<String, Entry>,
}

fn format() -> u32 {
    1
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Index {
            v: format(),
            tasks: BTreeMap::new(),
        }
    }

    /// Applies one update; `true` if the index changed. An entry is never replaced by an earlier
    /// state of its task (an older version, or the task deleted before it was created again),
    /// so late or repeated updates are harmless.
    pub fn apply(&mut self, update: &Update) -> bool {
        match update {
            Update::Put(id, entry) => match self.tasks.get(id) {
                Some(current) if current.rev().is_after(entry.rev()) || current == entry => false,
                _ => {
                    self.tasks.insert(id.clone(), entry.clone());
                    true
                }
            },
            Update::Remove(id, rev) => match self.tasks.get(id) {
                Some(current) if !current.rev().is_after(*rev) => {
                    self.tasks.remove(id);
                    true
                }
                _ => false,
            },
        }
    }

    /// Ids of the tasks that may be claimable at `now` (at `stage`, if given), in claim order:
    /// priority descending, then claimable-at, then id — the order of
    /// [`tasktrack_core::cas::Documents::claimable`].
    pub fn claimable(&self, stage: Option<&str>, now: Timestamp) -> Vec<&str> {
        self.claimable_keyed(stage, now)
            .into_iter()
            .map(|(_, _, id)| id)
            .collect()
    }

    /// [`Index::claimable`] with each id's sort key `(Reverse(priority), claimable_at)`, so
    /// that several shards can be merged into one claim order.
    pub fn claimable_keyed(
        &self,
        stage: Option<&str>,
        now: Timestamp,
    ) -> Vec<(Reverse<i32>, i64, &str)> {
        let mut found: Vec<(Reverse<i32>, i64, &str)> = self
            .tasks
            .iter()
            .filter_map(|(id, e)| {
                let (priority, at) = e.claim_key(stage, now)?;
                Some((priority, at, id.as_str()))
            })
            .collect();
        found.sort_unstable();
        found
    }

    /// Number of tasks per `(stage, status)`; an entry whose status code is unknown (an index
    /// edited by hand) counts under no status.
    pub fn counts(&self) -> Vec<CountRow> {
        let mut counts: BTreeMap<(Option<&str>, u8), u64> = BTreeMap::new();
        for e in self.tasks.values() {
            *counts.entry((e.stage(), e.0)).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|((stage, code), n)| (stage.map(str::to_owned), Status::from_code(code), n))
            .collect()
    }

    /// Ids of the tasks that `query` selects, in its order, after its cursor, at most
    /// `query.limit + 1` (one more than a page, so the caller knows whether a next page exists).
    pub fn select(&self, query: &TaskQuery) -> Vec<&str> {
        self.select_keyed(query)
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    }

    /// [`Index::select`] with each id's `updated_at` (ms), for merging shards.
    pub fn select_keyed(&self, query: &TaskQuery) -> Vec<(i64, &str)> {
        let cursor = query
            .after
            .as_ref()
            .map(|c: &Cursor| (c.updated_at.as_millis(), c.id.as_str()));
        self.select_after(query, cursor, query.limit)
    }

    /// Like [`Index::select_keyed`], but from the index position `cursor` (`(updated_at ms, id)`,
    /// in place of the query's cursor) and at most `n + 1` ids: `list` walks on from the last
    /// entry it consumed when some of the tasks it read no longer match.
    pub fn select_after(
        &self,
        query: &TaskQuery,
        cursor: Option<(i64, &str)>,
        n: usize,
    ) -> Vec<(i64, &str)> {
        let codes: Vec<u8> = query.statuses.iter().map(|s| s.code()).collect();
        let mut hits: Vec<(i64, &str)> = self
            .tasks
            .iter()
            .filter(|(id, e)| {
                (codes.is_empty() || codes.contains(&e.0))
                    && query.stage.as_deref().is_none_or(|s| e.stage() == Some(s))
                    && query.id_prefix.as_deref().is_none_or(|p| id.starts_with(p))
                    && query.updated_after.is_none_or(|t| e.4 >= t.as_millis())
                    && query.updated_before.is_none_or(|t| e.4 < t.as_millis())
            })
            .map(|(id, e)| (e.4, id.as_str()))
            .filter(|pos| match cursor {
                None => true,
                Some(cur) if query.newest_first => *pos < cur,
                Some(cur) => *pos > cur,
            })
            .collect();
        hits.sort_unstable();
        if query.newest_first {
            hits.reverse();
        }
        hits.truncate(n.saturating_add(1));
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tasktrack_core::JobName;

    fn entry(code: u8, prio: i32, at: Option<i64>, version: u64, updated: i64) -> Entry {
        Entry(code, prio, at, version, updated, None, 1)
    }

    fn rev(version: u64) -> Rev {
        Rev {
            created: 1,
            version,
        }
    }

    #[test]
    fn older_versions_never_overwrite_newer_ones() {
        let mut idx = Index::new();
        assert!(idx.apply(&Update::Put("a".into(), entry(10, 0, Some(5), 3, 1))));
        assert!(!idx.apply(&Update::Put("a".into(), entry(0, 0, Some(1), 2, 1))));
        assert!(
            !idx.apply(&Update::Put("a".into(), entry(10, 0, Some(5), 3, 1))),
            "repeat is a no-op"
        );
        assert!(idx.apply(&Update::Put("a".into(), entry(40, 0, None, 4, 2))));
        assert!(
            !idx.apply(&Update::Remove("a".into(), rev(3))),
            "a stale delete keeps the newer task"
        );
        assert!(idx.apply(&Update::Remove("a".into(), rev(4))));
        assert!(idx.tasks.is_empty());
    }

    /// A task deleted and created again under its id starts again at version 1: its entry is
    /// newer than any of the deleted task's, whatever their versions, and a late removal of the
    /// deleted task leaves it.
    #[test]
    fn a_re_created_task_is_never_replaced_by_its_deleted_predecessor() {
        let at = |created: i64, version: u64| {
            let mut e = entry(10, 0, None, version, created);
            e.6 = created;
            e
        };
        let mut idx = Index::new();
        assert!(idx.apply(&Update::Put("a".into(), at(100, 1))));
        assert!(
            idx.apply(&Update::Put("a".into(), at(200, 1))),
            "re-created"
        );
        for late in [at(100, 1), at(100, 2), at(100, 7)] {
            assert!(
                !idx.apply(&Update::Put("a".into(), late.clone())),
                "{late:?}"
            );
        }
        let deleted = Rev {
            created: 100,
            version: 7,
        };
        assert!(!idx.apply(&Update::Remove("a".into(), deleted)));
        assert_eq!(idx.tasks.get("a"), Some(&at(200, 1)));
        assert!(idx.apply(&Update::Put("a".into(), at(200, 2))));
    }

    /// An index written before entries carried `created_at` still reads (as 0), and its
    /// entries are then ordered by version alone.
    #[test]
    fn an_entry_without_a_creation_time_reads_and_orders_by_version() {
        let old: Index =
            serde_json::from_str(r#"{"v":1,"tasks":{"a":[10,0,5,3,1,null]}}"#).unwrap();
        let entry = &old.tasks["a"];
        assert_eq!(
            entry.rev(),
            Rev {
                created: 0,
                version: 3
            }
        );
        let mut idx = old.clone();
        assert!(!idx.apply(&Update::Put("a".into(), entry_at(2))));
        assert!(idx.apply(&Update::Put("a".into(), entry_at(4))));
    }

    fn entry_at(version: u64) -> Entry {
        let mut e = entry(10, 0, Some(5), version, 1);
        e.6 = 50;
        e
    }

    #[test]
    fn claimable_is_in_priority_then_time_then_id_order() {
        let mut idx = Index::new();
        idx.apply(&Update::Put("late".into(), entry(0, 0, Some(20), 1, 0)));
        idx.apply(&Update::Put("early".into(), entry(0, 0, Some(10), 1, 0)));
        idx.apply(&Update::Put("urgent".into(), entry(0, 5, Some(30), 1, 0)));
        idx.apply(&Update::Put("future".into(), entry(0, 9, Some(99), 1, 0)));
        idx.apply(&Update::Put("done".into(), entry(40, 9, None, 1, 0)));
        assert_eq!(
            idx.claimable(None, Timestamp::from_millis(50)),
            ["urgent", "early", "late"]
        );
        assert_eq!(
            idx.claimable(Some("x"), Timestamp::from_millis(50)),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn select_pages_by_updated_then_id_in_both_orders() {
        let mut idx = Index::new();
        for (i, id) in ["c", "a", "b"].iter().enumerate() {
            idx.apply(&Update::Put(
                (*id).into(),
                entry(0, 0, Some(0), 1, i as i64 / 2),
            ));
        }
        let mut q = TaskQuery::new(JobName::new("j").unwrap()).with_limit(1);
        assert_eq!(idx.select(&q), ["a", "c"]);
        q.after = Some(Cursor {
            updated_at: Timestamp::from_millis(0),
            id: tasktrack_core::TaskId::new("c").unwrap(),
        });
        assert_eq!(idx.select(&q), ["b"]);
        q.newest_first = true;
        assert_eq!(idx.select(&q), ["a"]);
    }

    #[test]
    fn select_after_walks_on_from_an_index_position() {
        let mut idx = Index::new();
        for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            idx.apply(&Update::Put(
                (*id).into(),
                entry(0, 0, Some(0), 1, i as i64),
            ));
        }
        idx.apply(&Update::Put("x".into(), entry(40, 0, None, 1, 9)));
        let q = TaskQuery::new(JobName::new("j").unwrap())
            .with_statuses([Status::Pending])
            .with_limit(1);
        // `n + 1` hits after the position, whatever the query's own limit and cursor.
        assert_eq!(
            idx.select_after(&q, Some((1, "b")), 2),
            [(2, "c"), (3, "d"), (4, "e")]
        );
        assert_eq!(idx.select_after(&q, Some((3, "d")), 2), [(4, "e")]);
        assert_eq!(idx.select_after(&q, None, 0), [(0, "a")]);
        let newest = TaskQuery {
            newest_first: true,
            ..q
        };
        assert_eq!(
            idx.select_after(&newest, Some((2, "c")), 5),
            [(1, "b"), (0, "a")]
        );
    }

    #[test]
    fn equal_content_serializes_to_equal_bytes() {
        let mut a = Index::new();
        let mut b = Index::new();
        a.apply(&Update::Put("x".into(), entry(0, 0, Some(0), 1, 0)));
        a.apply(&Update::Put("y".into(), entry(0, 0, Some(0), 1, 0)));
        b.apply(&Update::Put("y".into(), entry(0, 0, Some(0), 1, 0)));
        b.apply(&Update::Put("x".into(), entry(0, 0, Some(0), 1, 0)));
        assert_eq!(
            serde_json::to_vec(&a).unwrap(),
            serde_json::to_vec(&b).unwrap()
        );
    }
}
