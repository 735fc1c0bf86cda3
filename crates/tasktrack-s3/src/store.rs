//! [`S3Store`]: the generic CAS adapter over [`S3Documents`], with cached reads for the writes
//! that are conditional anyway.

use crate::documents::S3Documents;
use crate::objects::RequestCounts;
use serde_json::Value;
use std::time::Duration;
use tasktrack_core::cas;
use tasktrack_core::store::*;
use tasktrack_core::*;

/// The `s3://` store.
///
/// Every operation is the core's compare-and-swap adapter ([`tasktrack_core::cas`]) over
/// [`S3Documents`]. One refinement: `claim`, `heartbeat`, `patch_data`, `succeed`, `fail` and
/// `release` first try with the task as this process last saw it (usually: as it wrote it when
/// claiming), saving a GET. That read may be stale, but the write is conditional on its ETag,
/// so staleness costs a `412` and a re-read, never a wrong write; and any refusal computed from
/// a cached read is re-checked against a fresh read before it is returned.
#[derive(Debug)]
pub struct S3Store {
    docs: S3Documents,
    cached: S3Documents,
    url: String,
}

/// Runs `$body` with `$d` bound to the cached view; on an error other than "unavailable",
/// runs it again on fresh reads (so no refusal is ever based on a stale copy).
macro_rules! cached_first {
    ($self:ident, $d:ident => $body:expr) => {{
        let first = {
            let $d = &$self.cached;
            $body
        };
        match first {
            Err(e) if !matches!(e, Error::Unavailable(_)) => {
                let $d = &$self.docs;
                $body
            }
            done => done,
        }
    }};
}

impl S3Store {
    /// A store over these documents; `url` is for messages.
    pub fn new(docs: S3Documents, url: impl Into<String>) -> Self {
        S3Store {
            cached: docs.with_cached_reads(),
            docs,
            url: url.into(),
        }
    }

    /// The document layer (index rebuild, request counts).
    pub fn documents(&self) -> &S3Documents {
        &self.docs
    }

    /// Requests sent to S3 since the store was opened (the cost model, measured).
    pub fn requests(&self) -> RequestCounts {
        self.docs.requests()
    }

    /// The URL the store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }
}

tasktrack_core::store_impl! {
    S3Store;
    native {
        fn backend(&self) -> &'static str {
            "s3"
        }
        async fn claim(&self, key: &TaskKey, req: &Claim, now: Timestamp) -> Result<Claimed> {
            cached_first!(self, d => cas::claim(d, key, req, now).await)
        }
        async fn heartbeat(
            &self,
            lease: &Lease,
            lease_for: Duration,
            now: Timestamp,
        ) -> Result<Lease> {
            cached_first!(self, d => cas::heartbeat(d, lease, lease_for, now).await)
        }
        async fn patch_data(&self, lease: &Lease, patch: &Value, now: Timestamp) -> Result<Task> {
            cached_first!(self, d => cas::patch_data(d, lease, patch, now).await)
        }
        async fn succeed(&self, lease: &Lease, output: Value, now: Timestamp) -> Result<Task> {
            cached_first!(self, d => cas::succeed(d, lease, output.clone(), now).await)
        }
        async fn fail(&self, lease: &Lease, req: &Fail, now: Timestamp) -> Result<Task> {
            cached_first!(self, d => cas::fail(d, lease, req, now).await)
        }
        async fn release(&self, lease: &Lease, now: Timestamp) -> Result<Task> {
            cached_first!(self, d => cas::release(d, lease, now).await)
        }
    }
    via self.docs {
        init() -> ();
        jobs(state: Option<JobState>) -> Vec<Job> => list_jobs;
    }
    through_cas &self.docs {
        put_job(job: &JobName, spec: &JobSpec, now: Timestamp) -> Job;
        get_job(job: &JobName) -> Job;
        set_job_state(job: &JobName, change: JobStateChange, now: Timestamp) -> Job;
        delete_job(job: &JobName, now: Timestamp) -> Deleted;
        create(job: &JobName, tasks: &[NewTask], mode: CreateMode, now: Timestamp) -> Created;
        // `claimable` already uses the cache only when the index names the cached version.
        claim_next(job: &JobName, req: &ClaimNext, now: Timestamp) -> Vec<Claimed>;
        ignore(key: &TaskKey, req: &Ignore, now: Timestamp) -> Task;
        retry(key: &TaskKey, req: &Retry, now: Timestamp) -> Task;
        report(key: &TaskKey, req: &Report, now: Timestamp) -> Task;
        delete(key: &TaskKey, now: Timestamp) -> ();
        purge(req: &Purge) -> u64;
        get(key: &TaskKey) -> Task;
        list(query: &TaskQuery) -> TaskPage;
        counts(job: &JobName) -> Counts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;
    use crate::objects::fake::{LostAnswers, objects};
    use serde_json::json;
    use std::sync::Arc;

    fn store(bucket: Arc<LostAnswers>) -> S3Store {
        S3Store::new(
            S3Documents::new(objects(bucket), Layout::new("p")),
            "s3://fake/p",
        )
    }

    /// Each write of a task's life lands, but its answer is lost and object_store's retry of
    /// the same conditional PUT is refused (`412`): each is still reported as done.
    #[tokio::test]
    async fn writes_that_landed_before_a_retry_was_refused_count_as_done() {
        let bucket = Arc::new(LostAnswers::default());
        let store = store(bucket.clone());
        let job = JobName::new("j").unwrap();
        let key = TaskKey::new(job.clone(), TaskId::new("t1").unwrap());
        let now = Timestamp::from_millis(1_700_000_000_000);

        // create: counted as created, not as existing, and indexed (claim_next finds it).
        bucket.lose_next_put("/t1.json");
        let created = store
            .create(
                &job,
                &[NewTask::new(key.id.clone())],
                CreateMode::SkipExisting,
                now,
            )
            .await
            .unwrap();
        assert_eq!((created.created, created.existing), (1, 0), "{created:?}");

        // claim_next: the claim is ours, not an orphaned lease.
        bucket.lose_next_put("/t1.json");
        let claimed = store
            .claim_next(&job, &ClaimNext::new("w1", Duration::from_secs(60)), now)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "our claim was taken for a lost race");
        assert_eq!(claimed[0].task.attempts, 1);

        // succeed: done, not StaleLease.
        bucket.lose_next_put("/t1.json");
        let done = store
            .succeed(
                &claimed[0].lease,
                json!("ok"),
                now.plus(Duration::from_secs(1)),
            )
            .await
            .unwrap();
        assert_eq!(done.status, Status::Succeeded);
        assert_eq!(bucket.lost(), 3, "every fault fired");

        let stored = store.get(&key).await.unwrap();
        assert_eq!(stored.status, Status::Succeeded);
        assert_eq!((stored.attempts, stored.token), (1, 1));
        assert_eq!(stored.output, Some(json!("ok")));
        let counts = store.counts(&job).await.unwrap();
        assert_eq!(counts.by_status.succeeded, 1, "{counts:?}");
    }

    /// A claim that really lost its race is still reported lost: the other worker's lease
    /// stands, and nothing is claimed twice.
    #[tokio::test]
    async fn a_claim_that_lost_to_another_writer_stays_lost() {
        let bucket = Arc::new(LostAnswers::default());
        let mine = store(bucket.clone());
        let theirs = store(bucket.clone());
        let job = JobName::new("j").unwrap();
        let key = TaskKey::new(job.clone(), TaskId::new("t1").unwrap());
        let now = Timestamp::from_millis(1_700_000_000_000);
        mine.create(
            &job,
            &[NewTask::new(key.id.clone())],
            CreateMode::SkipExisting,
            now,
        )
        .await
        .unwrap();
        let req = Claim {
            owner: "theirs".into(),
            lease_for: Duration::from_secs(60),
            force: false,
        };
        let won = theirs.claim(&key, &req, now).await.unwrap();
        // `mine` still has the task as created in its cache and index: its claim is refused.
        let claimed = mine
            .claim_next(&job, &ClaimNext::new("mine", Duration::from_secs(60)), now)
            .await
            .unwrap();
        assert!(claimed.is_empty(), "{claimed:?}");
        let stored = mine.get(&key).await.unwrap();
        assert_eq!(stored.lease.map(|l| l.owner), Some("theirs".to_owned()));
        assert_eq!(stored.token, won.lease.token);
    }
}
