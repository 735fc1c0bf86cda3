//! The conformance suite: the rules every [`Store`] must keep, one case per rule.
//!
//! A backend runs the whole suite with one line in an integration test:
//!
//! ```ignore
//! async fn store() -> Option<std::sync::Arc<dyn tasktrack_core::Store>> { /* connect, or skip */ }
//! tasktrack_core::conformance_tests!(store);
//! ```
//!
//! The macro generates one `#[tokio::test]` per case, so a failure names the rule and the
//! backend, and the other cases still run. Each case gets a [`Harness`]: the store, a
//! [`ManualClock`] (no case sleeps), and a job name unique to the case, so cases can share one
//! server. Fixtures go through the [`Store`] trait only, and no case branches on the backend.
//!
//! A backend that cannot do something declares it:
//! `conformance_tests!(store, unsupported = [case_name, ...])`; for those cases the suite checks
//! that the store answers [`Error::Unsupported`] rather than a wrong answer, and prints the gap.
//!
//! A factory returns `None` to skip (server not reachable): use [`connect_or_skip`], which prints
//! a line saying so, and fails instead under `CI=true`.
//!
//! Cases are grouped by area: [`create`], [`claim`], [`lease`], [`finish`], [`admin`],
//! [`list`], [`counts`], [`keys`], [`jobs`], [`pipeline`], [`concurrency`], [`model_check`].
//! [`damaged`] and [`documents`] hold cases a backend runs from its own tests, with a hand the
//! trait does not give (damaging a stored record, a document's conditional write).

pub mod admin;
pub mod claim;
pub mod concurrency;
pub mod counts;
pub mod create;
pub mod damaged;
pub mod documents;
pub mod finish;
mod guarded;
pub mod jobs;
pub mod keys;
pub mod lease;
pub mod list;
pub mod model_check;
pub mod outage;
pub mod pipeline;

pub use guarded::Guarded;

use crate::error::{Error, Refusal, Result};
use crate::model::*;
use crate::store::*;
use crate::time::{Clock, ManualClock, Timestamp};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What each case gets.
#[derive(Debug, Clone)]
pub struct Harness {
    /// The store under test.
    pub store: Arc<dyn Store>,
    /// The time every request uses; cases move it by hand.
    pub clock: ManualClock,
    /// A job name unique to this case and run.
    pub job: JobName,
    /// Multiplier for the sizes of the concurrency cases (1.0: full size; slow emulators use less).
    pub scale: f64,
}

/// The lease most cases use.
pub const LEASE: Duration = Duration::from_secs(30);

impl Harness {
    /// A harness for `case` over `store`.
    pub fn new(store: Arc<dyn Store>, case: &str, scale: f64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let unique = format!("{case}-{}-{}", std::process::id(), nanos % 1_000_000_000);
        Harness {
            store,
            clock: ManualClock::new(Timestamp::from_millis(1_800_000_000_000)),
            job: JobName::new(unique)
                .unwrap_or_else(|e| panic!("case name {case:?} is not a valid job name: {e}")),
            scale,
        }
    }

    /// The current (manual) time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// `n` scaled by [`Harness::scale`], at least 1.
    pub fn scaled(&self, n: usize) -> usize {
        ((n as f64 * self.scale) as usize).max(1)
    }

    /// The key of task `id` in this case's job.
    pub fn key(&self, id: &str) -> TaskKey {
        TaskKey::new(self.job.clone(), tid(id))
    }

    /// Creates tasks with these ids (no data, default settings).
    pub async fn add(&self, ids: &[&str]) -> Result<Created> {
        let tasks: Vec<NewTask> = ids.iter().map(|id| NewTask::new(tid(id))).collect();
        self.store
            .create(&self.job, &tasks, CreateMode::SkipExisting, self.now())
            .await
    }

    /// Claims task `id` for `owner` with [`LEASE`].
    pub async fn claim(&self, id: &str, owner: &str) -> Result<Claimed> {
        self.store
            .claim(&self.key(id), &Claim::new(owner, LEASE), self.now())
            .await
    }

    /// Claims up to `limit` tasks for `owner`.
    pub async fn claim_next(&self, owner: &str, limit: usize) -> Result<Vec<Claimed>> {
        let req = ClaimNext::new(owner, LEASE).with_limit(limit);
        self.store.claim_next(&self.job, &req, self.now()).await
    }

    /// Fails a lease with a retryable error and no backoff.
    pub async fn fail_now(&self, lease: &Lease, message: &str) -> Result<Task> {
        let req = Fail {
            error: Failure::new("test", message),
            retryable: true,
            backoff: Backoff::NONE,
        };
        self.store.fail(lease, &req, self.now()).await
    }

    /// The task `id`.
    pub async fn get(&self, id: &str) -> Result<Task> {
        self.store.get(&self.key(id)).await
    }

    /// Sets job fields.
    pub async fn set_job(&self, spec: JobSpec) -> Result<Job> {
        self.store.put_job(&self.job, &spec, self.now()).await
    }
}

/// A task id from a literal (cases only use valid ids).
pub fn tid(id: &str) -> TaskId {
    TaskId::new(id).unwrap_or_else(|e| panic!("test id {id:?} is invalid: {e}"))
}

/// Asserts that `result` is a refusal for `expected` reason (ignoring lock details).
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(result: Result<T>, expected: &Refusal) {
    match result {
        Err(Error::Refused { reason, .. }) => assert_eq!(
            std::mem::discriminant(&reason),
            std::mem::discriminant(expected),
            "refused for {reason:?}, expected {expected:?}"
        ),
        other => panic!("expected refusal {expected:?}, got {other:?}"),
    }
}

/// `depth` levels of arrays and objects, alternating, around a number: JSON nested as deep as a
/// depth limit case needs ([`crate::lifecycle::MAX_JSON_DEPTH`]).
pub fn nested_json(depth: usize) -> serde_json::Value {
    let mut v = serde_json::json!(1);
    for i in 0..depth {
        v = if i % 2 == 0 {
            // Built by hand: `json!` would copy `v`, recursively, at every level.
            serde_json::Value::Array(vec![v])
        } else {
            serde_json::Value::Object(serde_json::Map::from_iter([("k".to_string(), v)]))
        };
    }
    v
}

/// The ids of a page's tasks, in its order.
pub fn ids(page: &TaskPage) -> Vec<&str> {
    page.tasks.iter().map(|t| t.id.as_str()).collect()
}

/// Asserts that `result` is exactly this refusal, its details included (the holder and expiry
/// of `Locked`, the instant of `NotYet`).
#[track_caller]
pub fn assert_refused_exactly<T: std::fmt::Debug>(result: Result<T>, expected: &Refusal) {
    match result {
        Err(Error::Refused { reason, .. }) => assert_eq!(&reason, expected),
        other => panic!("expected refusal {expected:?}, got {other:?}"),
    }
}

/// Asserts that `result` is [`Error::InvalidInput`].
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T>) {
    assert!(
        matches!(result, Err(Error::InvalidInput(_))),
        "expected InvalidInput, got {result:?}"
    );
}

/// Asserts that `result` is [`Error::StaleLease`].
#[track_caller]
pub fn assert_stale<T: std::fmt::Debug>(result: Result<T>) {
    assert!(
        matches!(result, Err(Error::StaleLease { .. })),
        "expected StaleLease, got {result:?}"
    );
}

/// Connects with `connect`, or — when the server is unreachable ([`Error::Unavailable`]) — prints
/// a line saying the backend is skipped and returns `None`. Under `CI=true` an unreachable server
/// fails instead, with `how_to_start` in the message: CI never skips a backend silently. Any other
/// error (a bad URL, a failed migration) is a bug, not a missing server, and always fails.
pub async fn connect_or_skip<F>(
    backend: &str,
    how_to_start: &str,
    connect: F,
) -> Option<Arc<dyn Store>>
where
    F: Future<Output = Result<Arc<dyn Store>>>,
{
    match connect.await {
        Ok(store) => Some(store),
        Err(Error::Unavailable(e)) if !in_ci() => {
            eprintln!(
                "SKIPPED {backend} conformance case: server unreachable ({e}); start it with: {how_to_start}"
            );
            None
        }
        Err(e @ Error::Unavailable(_)) => {
            panic!("{backend} server unreachable under CI=true: {e}. Start it with: {how_to_start}")
        }
        Err(e) => panic!("{backend} store could not be opened: {e}"),
    }
}

/// Whether we run under CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether `case` is in the macro's `unsupported = [...]` list (given as its source text).
#[doc(hidden)]
pub fn is_declared_gap(gaps: &str, case: &str) -> bool {
    gaps.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|g| g == case)
}

/// Runs a case that the backend declared unsupported: it must fail with [`Error::Unsupported`].
pub fn expect_unsupported(case: &str, result: Result<()>) {
    match result {
        Err(Error::Unsupported { backend, what }) => {
            eprintln!("KNOWN UNSUPPORTED {case} on {backend}: {what}");
        }
        other => panic!(
            "{case} is declared unsupported, so the store must answer Unsupported; got {other:?}"
        ),
    }
}

/// Generates one test per conformance case for a store factory
/// (`async fn() -> Option<Arc<dyn Store>>`).
///
/// Options: `scale = 0.1` shrinks the concurrency cases for slow servers;
/// `unsupported = [case, ...]` declares gaps (each must answer [`Error::Unsupported`]).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!($factory, scale = 1.0, unsupported = []);
    };
    ($factory:path, scale = $scale:expr) => {
        $crate::conformance_tests!($factory, scale = $scale, unsupported = []);
    };
    ($factory:path, unsupported = [$($gap:ident),* $(,)?]) => {
        $crate::conformance_tests!($factory, scale = 1.0, unsupported = [$($gap),*]);
    };
    ($factory:path, scale = $scale:expr, unsupported = [$($gap:ident),* $(,)?]) => {
        $crate::__conformance_cases!(@emit $factory, $scale, [$($gap),*],
            create::create_then_get_returns_pending_with_job_defaults,
            create::create_is_idempotent_and_leaves_existing_tasks_alone,
            create::create_counts_an_id_given_twice_once,
            create::create_replace_starts_afresh_and_fences_the_holder,
            create::create_with_zero_max_attempts_is_rejected,
            create::create_with_a_not_before_past_year_9999_is_rejected,
            create::get_of_a_missing_task_is_not_found,
            create::stored_task_serializes_with_stable_status_codes,
            create::create_of_an_existing_task_changes_nothing_on_it,
            create::every_status_serializes_with_its_stable_code,
            claim::claim_grants_a_lease_and_counts_an_attempt,
            claim::claim_refused_by_live_lease_counts_no_attempt,
            claim::own_live_lease_is_reentrant_with_the_same_token,
            claim::claim_of_finished_or_missing_task_says_why,
            claim::claim_with_zero_or_endless_lease_is_rejected,
            claim::force_claim_bumps_the_token_and_fences_the_holder,
            claim::claim_next_takes_higher_priority_then_older_first,
            claim::claim_next_passes_waiting_tasks_of_every_priority,
            claim::claim_next_batch_returns_distinct_tasks,
            claim::claim_next_skips_backoff_finished_and_live_tasks,
            claim::a_scheduled_task_is_claimable_from_its_not_before,
            claim::a_reentrant_claim_never_shortens_the_lease,
            lease::lease_is_live_strictly_before_its_expiry,
            lease::expired_lease_is_reclaimed_and_recorded_as_a_failed_attempt,
            lease::expired_lease_on_the_last_attempt_exhausts_the_task,
            lease::heartbeat_extends_the_lease,
            lease::stale_holder_cannot_heartbeat_succeed_fail_or_release,
            lease::holder_may_still_succeed_after_expiry_until_reclaimed,
            lease::a_lease_ends_at_its_expiry_for_every_operation,
            finish::succeed_records_output_and_clears_the_error,
            finish::fail_waits_for_backoff_then_exhausts_at_max_attempts,
            finish::non_retryable_failure_exhausts_at_once,
            finish::release_returns_to_pending_without_counting_the_attempt,
            finish::data_patches_by_the_holder_survive_a_failure,
            finish::history_keeps_the_last_twenty_attempts,
            finish::succeed_many_answers_each_lease_in_order,
            finish::succeed_many_answers_each_lease_by_its_own_fence,
            finish::succeed_many_advances_pipeline_stages,
            finish::succeed_and_claim_next_completes_then_claims,
            finish::succeed_and_claim_next_with_a_stale_lease_claims_nothing,
            finish::succeed_and_claim_next_advances_a_pipeline_stage,
            finish::fail_backoff_doubles_per_attempt_up_to_its_cap,
            finish::bad_lease_lengths_are_rejected_before_anything_is_written,
            finish::data_checkpoints_persist_through_every_outcome,
            finish::json_nested_past_the_depth_limit_is_refused_everywhere,
            admin::ignore_is_refused_on_a_live_lease_unless_forced,
            admin::retry_resets_attempts_from_failed_exhausted_and_ignored,
            admin::nothing_leaves_succeeded_without_force,
            admin::delete_is_refused_on_a_live_lease,
            admin::a_lease_on_a_deleted_task_does_not_hold_its_re_creation,
            admin::report_records_outcomes_without_a_claim,
            admin::purge_removes_only_old_finished_tasks,
            admin::delete_job_keeps_tasks_with_live_leases,
            admin::report_tallies_and_id_sets_follow_each_outcome,
            list::list_filters_by_status_stage_prefix_and_time,
            list::list_pages_with_a_stable_cursor_in_both_orders,
            list::list_with_bad_limit_is_rejected,
            list::list_follows_the_last_update_and_breaks_ties_by_id_bytes,
            list::list_prefix_is_literal_and_time_ranges_are_half_open,
            counts::counts_per_status_after_every_transition,
            counts::counts_with_amount_count_missing_tasks_as_pending_never_negative,
            counts::counts_of_an_unknown_job_are_zero_and_say_it_does_not_exist,
            counts::counts_follow_expiry_replace_purge_and_delete_job,
            keys::jobs_sharing_a_prefix_never_see_each_others_tasks,
            keys::awkward_keys_round_trip_unchanged,
            keys::purge_and_delete_job_stay_inside_their_job,
            jobs::put_job_creates_then_updates_only_given_fields,
            jobs::jobs_are_listed_by_state,
            jobs::job_state_moves_atomically_with_an_expected_state,
            jobs::get_of_a_missing_job_is_not_found,
            jobs::job_state_index_follows_every_move,
            pipeline::pipeline_success_advances_the_stage_and_resets_attempts,
            pipeline::pipeline_failure_retries_only_the_current_stage,
            pipeline::claim_next_by_stage_and_counts_per_stage,
            pipeline::pipeline_stage_success_clears_the_error_and_replaces_the_output,
            pipeline::a_pipeline_is_fixed_when_its_task_is_created,
            concurrency::many_workers_claim_each_task_once,
            concurrency::workers_handing_off_claim_each_task_once,
            concurrency::two_workers_race_for_one_task_and_exactly_one_wins,
            model_check::random_operation_sequences_agree_with_the_reference_model,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    (@emit $factory:path, $scale:expr, $gaps:tt, $($area:ident :: $case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(store) = $factory().await else { return };
                let harness = $crate::testkit::Harness::new(store, stringify!($case), $scale);
                let result = $crate::testkit::$area::$case(harness).await;
                if $crate::testkit::is_declared_gap(stringify!($gaps), stringify!($case)) {
                    $crate::testkit::expect_unsupported(stringify!($case), result);
                } else if let Err(e) = result {
                    panic!("{} failed with a store error: {e}", stringify!($case));
                }
            }
        )*
    };
}
