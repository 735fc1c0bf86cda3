//! Queries: [`TaskQuery`] with keyset pagination ([`Cursor`]), and progress [`Counts`].

use super::job::Job;
use super::key::{JobName, TaskId};
use super::status::Status;
use super::task::Task;
use crate::error::{Error, Result};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The default page size of [`TaskQuery`].
pub const DEFAULT_LIMIT: usize = 100;
/// The largest page a store returns.
pub const MAX_LIMIT: usize = 10_000;

/// A filter over one job's tasks, ordered by `updated_at` then `id` (oldest first unless
/// `newest_first`), one page at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskQuery {
    /// The job.
    pub job: JobName,
    /// Only these statuses (empty: all).
    #[serde(default)]
    pub statuses: Vec<Status>,
    /// Only this stage.
    #[serde(default)]
    pub stage: Option<String>,
    /// Only ids starting with this.
    #[serde(default)]
    pub id_prefix: Option<String>,
    /// Only tasks updated at or after this instant.
    #[serde(default)]
    pub updated_after: Option<Timestamp>,
    /// Only tasks updated strictly before this instant.
    #[serde(default)]
    pub updated_before: Option<Timestamp>,
    /// Page size (1 ..= [`MAX_LIMIT`]).
    pub limit: usize,
    /// Continue after this position (from the previous page's `next`).
    #[serde(default)]
    pub after: Option<Cursor>,
    /// Newest first instead of oldest first.
    #[serde(default)]
    pub newest_first: bool,
}

impl TaskQuery {
    /// All tasks of `job`, first page.
    pub fn new(job: JobName) -> Self {
        TaskQuery {
            job,
            statuses: Vec::new(),
            stage: None,
            id_prefix: None,
            updated_after: None,
            updated_before: None,
            limit: DEFAULT_LIMIT,
            after: None,
            newest_first: false,
        }
    }

    /// Restricts to these statuses.
    pub fn with_statuses(mut self, statuses: impl IntoIterator<Item = Status>) -> Self {
        self.statuses = statuses.into_iter().collect();
        self
    }

    /// Sets the page size.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Rejects a limit of zero or above [`MAX_LIMIT`].
    pub fn validate(&self) -> Result<()> {
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(Error::invalid(format!(
                "limit must be between 1 and {MAX_LIMIT}, got {}",
                self.limit
            )));
        }
        Ok(())
    }

    /// Whether `task` passes the filters (not the cursor).
    pub fn matches(&self, task: &Task) -> bool {
        task.job == self.job
            && (self.statuses.is_empty() || self.statuses.contains(&task.status))
            && self
                .stage
                .as_ref()
                .is_none_or(|s| task.stage.as_ref() == Some(s))
            && self.matches_place(task.updated_at, &task.id)
    }

    /// Whether `task` comes after the cursor in this query's order.
    pub fn is_after_cursor(&self, task: &Task) -> bool {
        self.is_after(task.updated_at, &task.id)
    }

    /// Whether a record at `at` passes what of this query reads only a place (the id prefix,
    /// the time range and the cursor): for a damaged record, whose store reads its status and
    /// stage, if at all, elsewhere ([`TaskPage::unreadable`]).
    pub fn admits_place(&self, at: &Cursor) -> bool {
        self.matches_place(at.updated_at, &at.id) && self.is_after(at.updated_at, &at.id)
    }

    /// The id prefix and time range filters.
    fn matches_place(&self, updated_at: Timestamp, id: &TaskId) -> bool {
        self.id_prefix
            .as_ref()
            .is_none_or(|p| id.as_str().starts_with(p.as_str()))
            && self.updated_after.is_none_or(|t| updated_at >= t)
            && self.updated_before.is_none_or(|t| updated_at < t)
    }

    /// Whether `(updated_at, id)` comes after the cursor in this query's order.
    fn is_after(&self, updated_at: Timestamp, id: &TaskId) -> bool {
        match &self.after {
            None => true,
            Some(c) => {
                let pos = (updated_at, id.as_str());
                let cur = (c.updated_at, c.id.as_str());
                if self.newest_first {
                    pos < cur
                } else {
                    pos > cur
                }
            }
        }
    }

    /// Filters, orders and pages an unordered set of tasks: for stores that cannot do it natively.
    pub fn paginate(&self, tasks: impl IntoIterator<Item = Task>) -> TaskPage {
        let mut hits: Vec<Task> = tasks
            .into_iter()
            .filter(|t| self.matches(t) && self.is_after_cursor(t))
            .collect();
        hits.sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id)));
        if self.newest_first {
            hits.reverse();
        }
        TaskPage::from_sorted(hits, self.limit)
    }
}

/// A position in a listing: the `(updated_at, id)` of the last task of a page.
///
/// Shown to users as an opaque string (`<millis>:<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// `updated_at` of the last task seen.
    pub updated_at: Timestamp,
    /// `id` of the last task seen.
    pub id: TaskId,
}

impl Cursor {
    /// The cursor pointing just after `task`.
    pub fn after(task: &Task) -> Self {
        Cursor {
            updated_at: task.updated_at,
            id: task.id.clone(),
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.updated_at.as_millis(), self.id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid(format!("bad cursor {s:?}"));
        let (ms, id) = s.split_once(':').ok_or_else(bad)?;
        let ms: i64 = ms.parse().map_err(|_| bad())?;
        Ok(Cursor {
            updated_at: Timestamp::from_millis(ms),
            id: TaskId::new(id).map_err(|_| bad())?,
        })
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One page of tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPage {
    /// The tasks, in query order.
    pub tasks: Vec<Task>,
    /// The tasks of this page whose records do not decode (damaged by hand or by another tool),
    /// left out of `tasks` and named here, so that one damaged record neither fails nor hides
    /// the rest of its job. Each is named on one page of a walk through the pages. A store
    /// places a damaged record in the listing order, and matches it against the query's
    /// filters, by what it can still read of it: the SQL columns, Redis's listing entry, the
    /// file store's and S3's index entries, DynamoDB's list key, MongoDB's raw fields. Where
    /// even that is damaged, the backend's page (docs/backends) says what it does. See
    /// DESIGN.md, "A damaged task record does not stop its job".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<UnreadableTask>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// A task a listing left out because its record does not decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadableTask {
    /// The task's id.
    pub id: TaskId,
    /// Why it cannot be read: the text of the [`Error::Corrupt`] that reading it gives, which
    /// names where the record lives.
    pub error: String,
}

impl UnreadableTask {
    /// Task `id`, unreadable because of `error`.
    pub fn new(id: TaskId, error: &Error) -> Self {
        UnreadableTask {
            id,
            error: error.to_string(),
        }
    }
}

/// One entry of a listing as a store read it, in query order: a task, or a record that does not
/// decode at a position the store could still read (its `updated_at` and id).
#[derive(Debug, Clone)]
// A listing holds one page of entries for the time it takes to cut it; boxing each task to
// shrink the rare unreadable variant would allocate once per task for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Listed {
    /// A task.
    Task(Task),
    /// A record that does not decode, at this position of the listing order.
    Unreadable(Cursor, UnreadableTask),
}

impl Listed {
    /// A record that does not decode (`error`), at the place its plain `id` and `updated_at`
    /// give (columns or fields that no damage to the rest reaches); `None` when `id` is no task
    /// id.
    pub fn unreadable_at(id: &str, updated_at: Timestamp, error: &Error) -> Option<Self> {
        let id = TaskId::new(id).ok()?;
        let unreadable = UnreadableTask::new(id.clone(), error);
        Some(Listed::Unreadable(Cursor { updated_at, id }, unreadable))
    }

    /// Where the entry stands in the listing order: `(updated_at, id)`.
    pub fn place(&self) -> (Timestamp, &str) {
        match self {
            Listed::Task(task) => (task.updated_at, task.id.as_str()),
            Listed::Unreadable(at, _) => (at.updated_at, at.id.as_str()),
        }
    }
}

impl TaskPage {
    /// Cuts an already ordered list at `limit`; `next` is set only when more remain.
    pub fn from_sorted(tasks: Vec<Task>, limit: usize) -> Self {
        Self::from_listed(tasks.into_iter().map(Listed::Task).collect(), limit)
    }

    /// Cuts an ordered listing at `limit` entries, tasks and unreadable records alike (a page
    /// reads at most `limit + 1` records whatever they hold); `next` points just after the last
    /// entry kept, and is set only when more remain.
    pub fn from_listed(mut entries: Vec<Listed>, limit: usize) -> Self {
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next = match entries.last() {
            Some(Listed::Task(task)) if more => Some(Cursor::after(task)),
            Some(Listed::Unreadable(at, _)) if more => Some(at.clone()),
            _ => None,
        };
        let mut page = TaskPage {
            tasks: Vec::with_capacity(entries.len()),
            unreadable: Vec::new(),
            next,
        };
        for entry in entries {
            match entry {
                Listed::Task(task) => page.tasks.push(task),
                Listed::Unreadable(_, unreadable) => page.unreadable.push(unreadable),
            }
        }
        page
    }
}

/// Number of tasks per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct StatusCounts {
    pub pending: u64,
    pub in_progress: u64,
    pub failed: u64,
    pub exhausted: u64,
    pub succeeded: u64,
    pub ignored: u64,
}

impl StatusCounts {
    /// The count for `status`.
    pub fn get(&self, status: Status) -> u64 {
        match status {
            Status::Pending => self.pending,
            Status::InProgress => self.in_progress,
            Status::Failed => self.failed,
            Status::Exhausted => self.exhausted,
            Status::Succeeded => self.succeeded,
            Status::Ignored => self.ignored,
        }
    }

    /// Adds `n` to the count for `status`.
    pub fn add(&mut self, status: Status, n: u64) {
        let slot = match status {
            Status::Pending => &mut self.pending,
            Status::InProgress => &mut self.in_progress,
            Status::Failed => &mut self.failed,
            Status::Exhausted => &mut self.exhausted,
            Status::Succeeded => &mut self.succeeded,
            Status::Ignored => &mut self.ignored,
        };
        *slot = slot.saturating_add(n);
    }

    /// The sum over all statuses.
    pub fn total(&self) -> u64 {
        Status::ALL.iter().map(|s| self.get(*s)).sum()
    }
}

/// A job's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// The job.
    pub job: JobName,
    /// Whether the job has a record (an unknown job counts all zeros).
    pub exists: bool,
    /// The job's expected amount, if set.
    pub amount: Option<u64>,
    /// Tasks that exist, [`unreadable`](Self::unreadable) ones included.
    pub known: u64,
    /// Per status; `pending` includes `amount − known` when the amount is larger.
    pub by_status: StatusCounts,
    /// Per stage and status (pipelines only).
    pub by_stage: BTreeMap<String, StatusCounts>,
    /// Tasks whose stored status no longer reads (a record edited by hand or by another tool):
    /// counted in `known` but under no status, since nobody can tell which one they hold.
    /// `list` names them (`TaskPage::unreadable`). Absent from the JSON form when zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreadable: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One of a store's raw counts: how many tasks of a stage (`None`: no stage) hold a status.
/// The status is `None` for tasks whose stored status no longer reads, which [`Counts`]
/// reports as [`unreadable`](Counts::unreadable).
pub type CountRow = (Option<String>, Option<Status>, u64);

impl Counts {
    /// Builds the counts from raw [`CountRow`]s and the job record, applying the rule:
    /// `pending = max(0, amount − known) + tasks pending`.
    pub fn from_raw(
        job: JobName,
        record: Option<&Job>,
        rows: impl IntoIterator<Item = CountRow>,
    ) -> Counts {
        let mut by_status = StatusCounts::default();
        let mut by_stage: BTreeMap<String, StatusCounts> = BTreeMap::new();
        let mut unreadable = 0u64;
        for (stage, status, n) in rows {
            let Some(status) = status else {
                unreadable = unreadable.saturating_add(n);
                continue;
            };
            by_status.add(status, n);
            if let Some(stage) = stage {
                by_stage.entry(stage).or_default().add(status, n);
            }
        }
        let known = by_status.total().saturating_add(unreadable);
        let amount = record.and_then(|j| j.amount);
        if let Some(amount) = amount {
            by_status.add(Status::Pending, amount.saturating_sub(known));
        }
        Counts {
            job,
            exists: record.is_some(),
            amount,
            known,
            by_status,
            by_stage,
            unreadable,
        }
    }

    /// Tasks in a terminal status.
    pub fn finished(&self) -> u64 {
        self.by_status.succeeded + self.by_status.exhausted + self.by_status.ignored
    }

    /// Whether every task (and every expected one) is terminal. Never while a task's status
    /// does not read: nobody can tell it is finished.
    pub fn all_terminal(&self) -> bool {
        self.unreadable == 0 && self.finished() == self.by_status.total()
    }

    /// Whether any task failed (waiting for a retry) or exhausted its attempts.
    pub fn has_failures(&self) -> bool {
        self.by_status.failed + self.by_status.exhausted > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job() -> JobName {
        JobName::new("j").unwrap()
    }

    /// Tasks whose status does not read count in `known` and in no status, keep the job from
    /// being all terminal, and appear in the JSON form only when there are some.
    #[test]
    fn unreadable_statuses_count_in_known_and_in_no_status() {
        let rows = [
            (None, Some(Status::Succeeded), 2),
            (Some("s".to_string()), None, 1),
        ];
        let counts = Counts::from_raw(job(), None, rows);
        assert_eq!((counts.known, counts.unreadable), (3, 1));
        assert_eq!(counts.by_status.total(), 2);
        assert!(counts.by_stage.is_empty(), "{counts:?}");
        assert!(!counts.all_terminal());
        assert_eq!(
            serde_json::to_value(&counts).unwrap()["unreadable"],
            json!(1)
        );

        let clean = Counts::from_raw(job(), None, [(None, Some(Status::Succeeded), 2)]);
        assert!(clean.all_terminal());
        let form = serde_json::to_value(&clean).unwrap();
        assert!(form.get("unreadable").is_none(), "{form}");
        let back: Counts = serde_json::from_value(form).unwrap();
        assert_eq!(back, clean);
    }

    /// An expected amount pads `pending` by what is not known yet, unreadable tasks included.
    #[test]
    fn the_amount_pads_pending_by_the_tasks_not_known_yet() {
        let mut record = Job::new(job(), crate::Timestamp::from_millis(0));
        record.amount = Some(5);
        let rows = [(None, Some(Status::Pending), 1), (None, None, 1)];
        let counts = Counts::from_raw(job(), Some(&record), rows);
        assert_eq!((counts.known, counts.by_status.pending), (2, 4));
    }
}
