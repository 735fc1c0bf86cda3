//! [`Guarded`]: a store that keeps a test's scratch space alive as long as itself.

use crate::error::Result;
use crate::model::*;
use crate::store::*;
use crate::time::Timestamp;
use serde_json::Value;
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

/// A store that holds `guard` for as long as it lives: how a test factory ties the cleanup of
/// its scratch space (a schema dropped, keys removed: whatever the guard's `Drop` does) to the
/// store the conformance suite holds, which may outlive the factory's own handles.
///
/// Every operation goes to the wrapped store, those with a default in the trait (`init`,
/// `succeed_many`, `succeed_and_claim_next`) included, so the suite tests the backend's own
/// implementations, never the trait's defaults.
pub struct Guarded {
    store: Arc<dyn Store>,
    _guard: Arc<dyn Any + Send + Sync>,
}

impl Guarded {
    /// `store`, holding `guard` until the last handle to it is dropped.
    pub fn wrap(store: Arc<dyn Store>, guard: Arc<dyn Any + Send + Sync>) -> Arc<dyn Store> {
        Arc::new(Guarded {
            store,
            _guard: guard,
        })
    }
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Guarded({:?})", self.store)
    }
}

crate::store_impl! {
    Guarded;
    native {
        fn backend(&self) -> &'static str {
            self.store.backend()
        }
    }
    via self.store {
        init() -> ();
        put_job(job: &JobName, spec: &JobSpec, now: Timestamp) -> Job;
        get_job(job: &JobName) -> Job;
        jobs(state: Option<JobState>) -> Vec<Job>;
        set_job_state(job: &JobName, change: JobStateChange, now: Timestamp) -> Job;
        delete_job(job: &JobName, now: Timestamp) -> Deleted;
        create(job: &JobName, tasks: &[NewTask], mode: CreateMode, now: Timestamp) -> Created;
        claim(key: &TaskKey, req: &Claim, now: Timestamp) -> Claimed;
        claim_next(job: &JobName, req: &ClaimNext, now: Timestamp) -> Vec<Claimed>;
        heartbeat(lease: &Lease, lease_for: Duration, now: Timestamp) -> Lease;
        patch_data(lease: &Lease, patch: &Value, now: Timestamp) -> Task;
        succeed(lease: &Lease, output: Value, now: Timestamp) -> Task;
        succeed_many(done: &[(Lease, Value)], now: Timestamp) -> Vec<Result<Task>>;
        succeed_and_claim_next(lease: &Lease, output: Value, next: &ClaimNext, now: Timestamp) -> Handoff;
        fail(lease: &Lease, req: &Fail, now: Timestamp) -> Task;
        release(lease: &Lease, now: Timestamp) -> Task;
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
