//! The model check's job-record operations: `put_job`, `set_job_state` and `jobs(state)`, each
//! compared with a model record moved by [`lifecycle::apply_job_spec`] and
//! [`lifecycle::move_job_state`], and the comparison of the stored record (`get_job`) with the
//! model's.
//!
//! The record matters to the rest of the sequence: a create that leaves `max_attempts` unset, and
//! a report of a new task, take the job's; a failure uses the job's backoff (as a worker made by
//! `Tracker::for_job` does); tasks created after a change of stages get the new stages.

use super::*;

/// A `put_job`. Each field `None` leaves the record's as it is; a few values are invalid (the
/// whole change is then refused with nothing written): `max_attempts` 0, a lease of 0 ms, a
/// backoff whose maximum is below its initial delay, a stage listed twice.
#[derive(Debug, Clone)]
pub(super) struct JobChange {
    max_attempts: Option<u8>,
    lease_ms: Option<u32>,
    /// An index into [`BACKOFFS`].
    backoff: Option<u8>,
    /// `Some(None)` clears the amount.
    amount: Option<Option<u16>>,
    /// `true`: an object naming the step; `false`: `null`.
    metadata: Option<bool>,
    /// An index into [`STAGE_SETS`].
    stages: Option<u8>,
    state: Option<JobState>,
}

/// The backoffs a change may set: the default, none at all, two others; the last is invalid.
const BACKOFFS: [Backoff; 5] = [
    Backoff {
        initial_ms: 1_000,
        max_ms: 300_000,
        jitter: true,
    },
    Backoff::NONE,
    Backoff {
        initial_ms: 5_000,
        max_ms: 20_000,
        jitter: false,
    },
    Backoff {
        initial_ms: 2_000,
        max_ms: 60_000,
        jitter: true,
    },
    Backoff {
        initial_ms: 10_000,
        max_ms: 5_000,
        jitter: true,
    },
];

/// The stages a change may set: none (single step), the pipeline's two, its second alone; the
/// last lists a stage twice and is invalid.
const STAGE_SETS: [&[&str]; 4] = [&[], &STAGES, &["s1"], &["s0", "s0"]];

pub(super) fn job_change() -> impl Strategy<Value = JobChange> {
    let max_attempts = prop::option::weighted(0.4, prop_oneof![1 => Just(0u8), 6 => 1..4u8]);
    let lease_ms = prop::option::weighted(0.3, prop_oneof![1 => Just(0u32), 6 => 1..180_000u32]);
    let backoff = prop::option::weighted(0.4, prop_oneof![8 => 0..4u8, 1 => Just(4u8)]);
    let amount = prop::option::weighted(0.25, prop::option::weighted(0.8, 0..10u16));
    let metadata = prop::option::weighted(0.3, any::<bool>());
    let stages = prop::option::weighted(0.3, prop_oneof![8 => 0..3u8, 1 => Just(3u8)]);
    let state = prop::option::weighted(0.3, job_state());
    (
        max_attempts,
        lease_ms,
        backoff,
        amount,
        metadata,
        stages,
        state,
    )
        .prop_map(
            |(max_attempts, lease_ms, backoff, amount, metadata, stages, state)| JobChange {
                max_attempts,
                lease_ms,
                backoff,
                amount,
                metadata,
                stages,
                state,
            },
        )
}

pub(super) fn job_state() -> impl Strategy<Value = JobState> {
    prop::sample::select(JobState::ALL.to_vec())
}

impl JobChange {
    /// The request; the metadata it sets names `step`, so every change writes something new.
    fn spec(&self, step: usize) -> JobSpec {
        let pick = |i: u8, len: usize| usize::from(i) % len;
        JobSpec {
            metadata: self.metadata.map(|object| {
                if object {
                    json!({ "step": step })
                } else {
                    Value::Null
                }
            }),
            amount: self.amount.map(|a| a.map(u64::from)),
            max_attempts: self.max_attempts.map(u32::from),
            lease: self.lease_ms.map(|ms| Duration::from_millis(u64::from(ms))),
            backoff: self.backoff.map(|i| BACKOFFS[pick(i, BACKOFFS.len())]),
            stages: self.stages.map(|i| {
                STAGE_SETS[pick(i, STAGE_SETS.len())]
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            }),
            state: self.state,
        }
    }
}

/// What a `set_job_state` expects the state to be.
#[derive(Debug, Clone, Copy)]
pub(super) enum Expect {
    /// Nothing: the move is unconditional.
    Nothing,
    /// The state the model's record is in (pending when there is no record): the move happens.
    Current,
    /// This state: a conflict unless the record is in it.
    State(JobState),
}

pub(super) fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        1 => Just(Expect::Nothing),
        1 => Just(Expect::Current),
        1 => job_state().prop_map(Expect::State),
    ]
}

/// A job record as the answers show it: its JSON, keys sorted.
fn record(job: &Job) -> Option<String> {
    Some(serde_json::to_value(job).map_or_else(|e| e.to_string(), |v| canonical(&v)))
}

/// `put_job` on the store and [`lifecycle::apply_job_spec`] on the model.
pub(super) async fn put_job(
    h: &Harness,
    model: &mut Model,
    change: &JobChange,
    step: usize,
    now: Timestamp,
) -> (Answer, Answer) {
    let spec = change.spec(step);
    let got = h.store.put_job(&model.name, &spec, now).await;
    let want = lifecycle::apply_job_spec(model.job.as_ref(), &model.name, &spec, now);
    if let Ok(job) = &want {
        model.job = Some(job.clone());
    }
    (answer(&got, record), answer(&want, record))
}

/// `set_job_state` on the store and [`lifecycle::move_job_state`] on the model (`NotFound`
/// without a record).
pub(super) async fn set_job_state(
    h: &Harness,
    model: &mut Model,
    to: JobState,
    expect: Expect,
    now: Timestamp,
) -> (Answer, Answer) {
    let expected = match expect {
        Expect::Nothing => None,
        Expect::Current => Some(model.job.as_ref().map_or(JobState::Pending, |j| j.state)),
        Expect::State(s) => Some(s),
    };
    let change = JobStateChange { to, expected };
    let got = h.store.set_job_state(&model.name, change, now).await;
    let want = match &model.job {
        Some(job) => lifecycle::move_job_state(job, change, now),
        None => Err(Error::NotFound(format!("job {}", model.name))),
    };
    if let Ok(job) = &want {
        model.job = Some(job.clone());
    }
    (answer(&got, record), answer(&want, record))
}

/// `jobs(state)`: the store's list holds other cases' jobs too, so only the sequence's own job
/// is compared: listed once with the model's record when the model's is in `state` (or no state
/// is asked for), absent otherwise.
pub(super) async fn jobs(h: &Harness, model: &Model, state: Option<JobState>) -> (Answer, Answer) {
    let got = h.store.jobs(state).await;
    let want: Vec<Job> = model
        .job
        .iter()
        .filter(|j| state.is_none_or(|s| j.state == s))
        .cloned()
        .collect();
    let ours = |jobs: &Vec<Job>| {
        let listed: Vec<String> = jobs
            .iter()
            .filter(|j| j.name == model.name)
            .filter_map(record)
            .collect();
        Some(format!("[{}]", listed.join(", ")))
    };
    (answer(&got, ours), answer(&Ok(want), ours))
}

/// `Some(what differed)` when the store's job record (`get_job`; `None` for `NotFound`) is not
/// the model's, after `ctx`.
pub(super) async fn job_differs(h: &Harness, model: &Model, ctx: &str) -> Result<Option<String>> {
    let stored = match h.store.get_job(&model.name).await {
        Ok(job) => Some(job),
        Err(Error::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    if stored == model.job {
        return Ok(None);
    }
    let show = |job: &Option<Job>| job.as_ref().and_then(record).unwrap_or("(none)".into());
    Ok(Some(format!(
        "the job record differs after {ctx}:\n store: {}\n model: {}",
        show(&stored),
        show(&model.job)
    )))
}
