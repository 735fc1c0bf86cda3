//! The [`Store`] trait: the contract every backend implements, and its request types.
//!
//! Verbs follow the lifecycle (`create`, `claim`, `claim_next`, `heartbeat`, `succeed`, `fail`,
//! `release`, `ignore`, `retry`); queries are nouns (`get`, `list`, `counts`, `jobs`). Every
//! request that depends on time carries `now`: a store never reads a clock.
//!
//! The rules themselves live in [`crate::lifecycle`]; a store only loads, applies, and writes
//! atomically (or restates a rule natively, pinned by the conformance suite).

use crate::error::{Error, Result};
use crate::model::*;
use crate::time::Timestamp;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// What `create` does with a task that already exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreateMode {
    /// Leave it as it is (idempotent bulk import). The default.
    #[default]
    SkipExisting,
    /// Start it afresh as `pending` with the new data ([`crate::lifecycle::replace_task`]): a
    /// current holder is fenced out, and the token counter goes on from where it was.
    Replace,
}

/// What `create` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// New tasks.
    pub created: u64,
    /// Tasks that existed and were left alone.
    pub existing: u64,
    /// Tasks that existed and were replaced.
    pub replaced: u64,
}

/// A claim of one task by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The worker claiming.
    pub owner: String,
    /// Lease length (> 0).
    pub lease_for: Duration,
    /// Claim whatever the status, fencing out any holder.
    pub force: bool,
}

impl Claim {
    /// A plain claim.
    pub fn new(owner: impl Into<String>, lease_for: Duration) -> Self {
        Claim {
            owner: owner.into(),
            lease_for,
            force: false,
        }
    }
}

/// A claim of the next claimable tasks of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimNext {
    /// The worker claiming.
    pub owner: String,
    /// Lease length (> 0).
    pub lease_for: Duration,
    /// How many tasks at most (1 to [`MAX_CLAIM_LIMIT`](crate::cas::MAX_CLAIM_LIMIT)).
    pub limit: usize,
    /// Only tasks at this pipeline stage; `None`: any stage.
    pub stage: Option<String>,
}

impl ClaimNext {
    /// Claim one task at any stage.
    pub fn new(owner: impl Into<String>, lease_for: Duration) -> Self {
        ClaimNext {
            owner: owner.into(),
            lease_for,
            limit: 1,
            stage: None,
        }
    }

    /// Sets the batch size.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Only this stage.
    pub fn at_stage(mut self, stage: impl Into<String>) -> Self {
        self.stage = Some(stage.into());
        self
    }
}

/// A failure reported by the lease holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fail {
    /// What went wrong.
    pub error: Failure,
    /// `false`: exhausted at once, whatever attempts are left.
    pub retryable: bool,
    /// Delay before the next claim.
    pub backoff: Backoff,
}

impl Fail {
    /// A retryable failure with the default backoff.
    pub fn new(error: Failure) -> Self {
        Fail {
            error,
            retryable: true,
            backoff: Backoff::default(),
        }
    }

    /// The failure to record for an attempt whose outcome the store refused (`refusal`, an
    /// [`Error::InvalidInput`]: an output or an error too large for
    /// a DynamoDB item, say), kind `unrecordable` ([`Failure::unrecordable`]):
    /// - for a refused success (`refused` is `None`), not retryable: running the task again
    ///   would most likely produce the same;
    /// - for a refused failure, as retryable as it was, its kind and the start of its message
    ///   (at most [`Fail::KEPT_OF_REFUSED`] characters) kept as the detail.
    pub fn instead_of(refused: Option<&Fail>, refusal: &crate::Error, backoff: Backoff) -> Self {
        let error = Failure::unrecordable(refusal);
        match refused {
            None => Fail {
                error,
                retryable: false,
                backoff,
            },
            Some(refused) => {
                let message: String = refused
                    .error
                    .message
                    .chars()
                    .take(Self::KEPT_OF_REFUSED)
                    .collect();
                Fail {
                    error: error.with_detail(format!("{}: {message}", refused.error.kind)),
                    retryable: refused.retryable,
                    backoff: refused.backoff,
                }
            }
        }
    }

    /// How many characters of a refused failure's message [`Fail::instead_of`] keeps.
    pub const KEPT_OF_REFUSED: usize = 1_000;

    /// What a store records when a claim's lease does not fit in the task's stored form (its
    /// document or item would outgrow the backend's size limit; `why` says how): kind
    /// `unrecordable`, not retryable, so the task is exhausted instead of being offered again at
    /// the head of its queue by every claim.
    pub fn unleasable(why: impl std::fmt::Display) -> Self {
        Fail {
            error: Failure::new(
                Failure::UNRECORDABLE,
                format!("the store cannot hold this task under a lease: {why}"),
            ),
            retryable: false,
            backoff: Backoff::NONE,
        }
    }
}

/// A person's decision to skip a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ignore {
    /// Why (recorded in history).
    pub reason: Option<String>,
    /// Also take it from a live holder, or out of `succeeded`.
    pub force: bool,
}

/// A person's decision to run a task again from scratch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// Also from `succeeded`, or from a live holder.
    pub force: bool,
}

/// An outcome recorded without a claim (producers that only count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Success or failure.
    pub success: bool,
    /// A note: the output's `detail` on success, the error message on failure.
    pub detail: Option<String>,
}

/// Removal of finished tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purge {
    /// One job, or all jobs.
    pub job: Option<JobName>,
    /// Which terminal statuses (succeeded / ignored / exhausted); never a live one.
    pub statuses: Vec<Status>,
    /// Only tasks last updated before this instant.
    pub older_than: Timestamp,
}

impl Purge {
    /// Rejects non-terminal statuses: purge never touches live or claimable work.
    pub fn validate(&self) -> Result<()> {
        if self.statuses.is_empty() {
            return Err(Error::invalid("purge needs at least one status"));
        }
        match self.statuses.iter().find(|s| !s.is_terminal()) {
            Some(s) => Err(Error::invalid(format!(
                "purge only removes finished tasks (succeeded, exhausted, ignored), not {s}"
            ))),
            None => Ok(()),
        }
    }
}

/// What a job deletion did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// Tasks removed.
    pub tasks: u64,
    /// Tasks left because a worker holds a live lease on them.
    pub kept_leased: u64,
    /// Whether the job record was removed (only when no task was kept).
    pub job_removed: bool,
}

/// What [`Store::succeed_and_claim_next`] did: the task it completed and the tasks it claimed
/// next (empty when nothing was claimable).
#[derive(Debug, Clone, PartialEq)]
pub struct Handoff {
    /// The completed task, as `succeed` returns it (succeeded, or pending at its next stage).
    pub done: Task,
    /// What `claim_next` granted afterwards.
    pub next: Vec<Claimed>,
}

/// The storage contract. Object-safe: use it as `Arc<dyn Store>`.
///
/// Every implementation must pass the conformance suite (`tasktrack_core::testkit`, feature
/// `testkit`). Errors are the portable [`Error`]; a refused transition is
/// [`Error::Refused`], a fenced-out lease [`Error::StaleLease`].
#[async_trait]
pub trait Store: fmt::Debug + Send + Sync + 'static {
    /// The backend's name (`memory`, `sqlite`, `postgres`, ...).
    fn backend(&self) -> &'static str;

    /// Creates tables, indexes, buckets (idempotent). `open()` calls it.
    async fn init(&self) -> Result<()> {
        Ok(())
    }

    // ---- jobs ----

    /// Creates the job or updates the fields `spec` sets.
    async fn put_job(&self, job: &JobName, spec: &JobSpec, now: Timestamp) -> Result<Job>;
    /// The job's record; [`Error::NotFound`] if none.
    async fn get_job(&self, job: &JobName) -> Result<Job>;
    /// Jobs, optionally only those in `state` (an indexed query), ordered by name.
    async fn jobs(&self, state: Option<JobState>) -> Result<Vec<Job>>;
    /// Moves the job's state atomically (compare-and-set when `expected` is given).
    async fn set_job_state(
        &self,
        job: &JobName,
        change: JobStateChange,
        now: Timestamp,
    ) -> Result<Job>;
    /// Deletes the job and its tasks, except tasks held by a live lease.
    async fn delete_job(&self, job: &JobName, now: Timestamp) -> Result<Deleted>;

    // ---- the lifecycle ----

    /// Creates tasks as `pending` (the job record is created with defaults if missing).
    async fn create(
        &self,
        job: &JobName,
        tasks: &[NewTask],
        mode: CreateMode,
        now: Timestamp,
    ) -> Result<Created>;
    /// Claims one task by id; a refusal says why.
    async fn claim(&self, key: &TaskKey, req: &Claim, now: Timestamp) -> Result<Claimed>;
    /// Claims up to `req.limit` claimable tasks, highest priority then earliest first.
    async fn claim_next(
        &self,
        job: &JobName,
        req: &ClaimNext,
        now: Timestamp,
    ) -> Result<Vec<Claimed>>;
    /// Extends a lease to `now + lease_for`.
    async fn heartbeat(&self, lease: &Lease, lease_for: Duration, now: Timestamp) -> Result<Lease>;
    /// Applies a JSON merge patch (RFC 7386) to `data`, fenced by the lease.
    async fn patch_data(&self, lease: &Lease, patch: &Value, now: Timestamp) -> Result<Task>;
    /// Records success (or advances to the next pipeline stage).
    async fn succeed(&self, lease: &Lease, output: Value, now: Timestamp) -> Result<Task>;
    /// Batched completion: [`Store::succeed`] for each `(lease, output)`, one result per lease
    /// in order. The outer `Err` is for a failure that leaves the outcome of the whole batch
    /// unknown (the store was unreachable); a stale lease or a refusal is that entry's own `Err`.
    ///
    /// Not atomic as a whole: each entry succeeds or fails on its own, exactly as `succeed`
    /// would. The default loops over `succeed`; a backend that can write many rows in one
    /// statement or commit (SQL, SQLite, Redis) overrides it, which is what makes batched
    /// workers faster than one commit per task.
    async fn succeed_many(
        &self,
        done: &[(Lease, Value)],
        now: Timestamp,
    ) -> Result<Vec<Result<Task>>> {
        let mut out = Vec::with_capacity(done.len());
        for (lease, output) in done {
            match self.succeed(lease, output.clone(), now).await {
                Err(e @ Error::Unavailable(_)) => return Err(e),
                other => out.push(other),
            }
        }
        Ok(out)
    }
    /// Hand-off: [`Store::succeed`] for `lease`, then [`Store::claim_next`] on the same job —
    /// what a worker does after every task, in one call. A worker that loops on it pays one
    /// round trip (and, on a backend that overrides it, one commit) per task instead of two.
    ///
    /// The success comes first and decides: when it is refused (a stale lease, say) that error
    /// is returned and nothing is claimed; call `claim_next` to go on. A backend that overrides
    /// this does both in one transaction, so an `Err` means neither happened (except
    /// [`Error::Unavailable`], whose outcome is unknown as always). The default calls the two
    /// operations in turn: if the claim fails, the success stays recorded and the claim's
    /// error is returned.
    async fn succeed_and_claim_next(
        &self,
        lease: &Lease,
        output: Value,
        next: &ClaimNext,
        now: Timestamp,
    ) -> Result<Handoff> {
        crate::cas::check_claim_next(next)?;
        let done = self.succeed(lease, output, now).await?;
        let next = self.claim_next(&lease.key.job, next, now).await?;
        Ok(Handoff { done, next })
    }
    /// Records a failure: `failed` with backoff, or `exhausted`.
    async fn fail(&self, lease: &Lease, req: &Fail, now: Timestamp) -> Result<Task>;
    /// Gives the task back as `pending` without counting the attempt.
    async fn release(&self, lease: &Lease, now: Timestamp) -> Result<Task>;
    /// Marks a task `ignored`.
    async fn ignore(&self, key: &TaskKey, req: &Ignore, now: Timestamp) -> Result<Task>;
    /// Resets a task to `pending` with zero attempts.
    async fn retry(&self, key: &TaskKey, req: &Retry, now: Timestamp) -> Result<Task>;
    /// Records an outcome without a claim, creating the task if needed.
    async fn report(&self, key: &TaskKey, req: &Report, now: Timestamp) -> Result<Task>;
    /// Deletes one task (refused while a live lease holds it).
    async fn delete(&self, key: &TaskKey, now: Timestamp) -> Result<()>;
    /// Deletes finished tasks older than a cut-off; returns how many.
    async fn purge(&self, req: &Purge) -> Result<u64>;

    // ---- queries ----

    /// One task; [`Error::NotFound`] if it does not exist.
    async fn get(&self, key: &TaskKey) -> Result<Task>;
    /// A page of tasks.
    async fn list(&self, query: &TaskQuery) -> Result<TaskPage>;
    /// Progress of a job, without scanning its tasks.
    async fn counts(&self, job: &JobName) -> Result<Counts>;
}

/// Every task `query` selects that `keep` keeps, read page after page from `query`'s cursor
/// with `query.limit` tasks a page (a damaged record a page names is not a task, and is left
/// out).
pub async fn tasks_where(
    store: &dyn Store,
    mut query: TaskQuery,
    keep: impl Fn(&Task) -> bool,
) -> Result<Vec<Task>> {
    let mut found = Vec::new();
    loop {
        let page = store.list(&query).await?;
        found.extend(page.tasks.into_iter().filter(|t| keep(t)));
        match page.next {
            Some(after) => query.after = Some(after),
            None => return Ok(found),
        }
    }
}

/// A store URL fit to print: the password, if any, replaced by `***`
/// (`postgres://app:secret@db/x` becomes `postgres://app:***@db/x`), and so is the value of every
/// query parameter whose name says it holds a secret (`password`, `secret` or `token` in it, as
/// in sqlx's `?password=` or `sslpassword=`). Every face that shows a store URL (errors,
/// `tasktrack init`, the benchmark) goes through it.
pub fn redact_url(url: &str) -> String {
    let (user_info, rest) = match user_info_end(url) {
        Some(at) => (redact_user_info(&url[..at]), &url[at..]),
        None => (String::new(), url),
    };
    let mut out = user_info;
    match rest.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query.split('&').map(redact_param).collect();
            out.push_str(path);
            out.push('?');
            out.push_str(&params.join("&"));
        }
        None => out.push_str(rest),
    }
    out
}

/// Where the user part of a store URL (`scheme://user:password`) ends: the index of the `@` after
/// it, or `None` without one. The last `@` before the query, so a password holding an unencoded
/// `@` or `/` stays whole; failing that, the first `@` if no `/` comes before it (a password
/// holding an unencoded `?`). URL parsers that split by hand use it, so no part of a password
/// ends up in a host or a database name (which errors print).
pub fn user_info_end(url: &str) -> Option<usize> {
    let start = url.find("://")? + 3;
    let base = url.split_once('?').map_or(url, |(base, _)| base);
    match base.rfind('@') {
        Some(at) if at > start => Some(at),
        _ => url[start..]
            .find('@')
            .filter(|at| !url[start..start + at].contains('/'))
            .map(|at| start + at),
    }
}

/// `scheme://user:password` with the password masked.
fn redact_user_info(user_info: &str) -> String {
    let start = user_info.find("://").map_or(0, |s| s + 3);
    match user_info[start..].split_once(':') {
        Some((user, _)) => format!("{}{user}:***", &user_info[..start]),
        None => user_info.to_string(),
    }
}

/// `name=value` with the value masked when the name says it is a secret.
fn redact_param(param: &str) -> String {
    match param.split_once('=') {
        Some((name, _))
            if ["password", "secret", "token"]
                .iter()
                .any(|word| name.to_ascii_lowercase().contains(word)) =>
        {
            format!("{name}=***")
        }
        _ => param.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redact_url_hides_only_the_password() {
        assert_eq!(
            redact_url("postgres://app:secret@db:5432/x?schema=s"),
            "postgres://app:***@db:5432/x?schema=s"
        );
        assert_eq!(redact_url("mongodb://u:p:q@h/db"), "mongodb://u:***@h/db");
        assert_eq!(redact_url("mongodb://u:p@ss@h/db"), "mongodb://u:***@h/db");
        assert_eq!(redact_url("mongodb://u:p/s@h/db"), "mongodb://u:***@h/db");
        assert_eq!(
            redact_url("postgres://u:p?s@h/db?x=1"),
            "postgres://u:***@h/db?x=1"
        );
    }

    #[test]
    fn redact_url_hides_secret_query_parameters() {
        assert_eq!(
            redact_url("postgres://app@db/x?schema=s&password=hunter2&sslpassword=k"),
            "postgres://app@db/x?schema=s&password=***&sslpassword=***"
        );
        assert_eq!(
            redact_url("s3://bucket/p?aws_secret_access_key=abc&session_token=t&region=eu"),
            "s3://bucket/p?aws_secret_access_key=***&session_token=***&region=eu"
        );
        // An `@` in the query is not a user part.
        assert_eq!(
            redact_url("redis://h:6379/0?prefix=a@b"),
            "redis://h:6379/0?prefix=a@b"
        );
        for unchanged in [
            "redis://127.0.0.1:6379/0",
            "mysql://root@h/db",
            "sqlite://./t.db",
        ] {
            assert_eq!(redact_url(unchanged), unchanged);
        }
    }
}
