//! Conformance case: random operation sequences against a reference model.
//!
//! The reference model is a map of tasks moved only by the pure functions of
//! [`crate::lifecycle`]. Random sequences of operations run on the store and on the model; after
//! every step the results, every task (`updated_at` included), the job's counts (per status and
//! stage) and its listing (in both orders) must agree. This is what keeps a backend that restates
//! rules natively (SQL, Lua) equal to the rules. The operations:
//!
//! - create of one to three tasks, with [`CreateMode::SkipExisting`] or [`CreateMode::Replace`]
//!   (of a task in any status, a live or expired lease and `succeeded` included), each with a
//!   random priority and `not_before`, so that claim order and delayed claimability are
//!   exercised, and mostly with its own `max_attempts` (else the job's);
//! - claim, forced claim, `claim_next` (one or a batch, at any stage or at one stage), the
//!   hand-off `succeed_and_claim_next`;
//! - succeed, `succeed_many`, fail (with the job record's backoff), release, heartbeat,
//!   `patch_data` (an object merged, `null` members removing keys, a non-object replacing the
//!   data whole) — with current and stale leases;
//! - ignore, retry, report, delete;
//! - purge of finished tasks, of the sequence's job or of all jobs, with valid and invalid
//!   status sets;
//! - the job record: `put_job` (max_attempts, lease, backoff, amount, metadata, stages, state;
//!   invalid values too), `set_job_state` (with no expected state, the current one or another),
//!   `jobs(state)` (only the sequence's own job is compared: other cases' jobs may be listed);
//!   the stored record (`get_job`) is compared with the model's after each `put_job` and
//!   `set_job_state` and after the last operation, which is where a stray write by another
//!   operation shows;
//! - time passing, so that leases expire and backoffs and `not_before` pass.
//!
//! About a third of the sequences run on a job with two pipeline stages (set by `put_job` before
//! the first operation), so that success advances the stage; a later `put_job` may change the
//! stages of the tasks created after it.
//!
//! The case runs its clock from an instant years before the other cases' (and before any real
//! clock a test might use), and removes each sequence's job afterwards: a purge of all jobs
//! (cut off at most a millisecond after the case's now) can then only remove this case's own tasks, even on
//! a store whose cases share a namespace, and the count it answers is the model's.
//!
//! A sequence that disagrees is shrunk to the smallest failing sequence found, which the failure
//! message shows with what differed. `TASKTRACK_MODEL_CHECK_SEQUENCES` (a count) and
//! `TASKTRACK_MODEL_CHECK_SEED` (0-255) run a longer or a different search.

use super::*;
use crate::ErrorKind;
use crate::lifecycle::{self, ClaimDecision};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};
use std::collections::BTreeMap;

mod job_record;
use job_record::{Expect, JobChange};

const IDS: u8 = 4;

/// The stages of a pipeline sequence's job. `claim_next` asks for them in unstaged sequences
/// too, where they match nothing.
const STAGES: [&str; 2] = ["s0", "s1"];

/// Where the case's clock starts: 2001, long before the harness's usual start (2027) and any
/// real clock.
const EPOCH: Timestamp = Timestamp::from_millis(1_000_000_000_000);

/// A task to create.
#[derive(Debug, Clone)]
struct Add {
    id: u8,
    priority: i8,
    /// `not_before` this many times ten seconds from now; `None`: at once.
    delay: Option<u8>,
    /// Its own `max_attempts` of 2 (so that exhaustion is common); `false`: the job's.
    own_limit: bool,
}

/// A purge: of the sequence's job or of all jobs; of the statuses in `statuses`, a bit set over
/// [`PURGE_STATUSES`] (empty, or with a live status, is invalid); cut off `age` seconds before
/// now (`Some(0)`: a task written now stays), or with `None` a millisecond after now (every
/// finished task goes).
#[derive(Debug, Clone)]
struct PurgeOp {
    all_jobs: bool,
    statuses: u8,
    age: Option<u8>,
}

const PURGE_STATUSES: [Status; 4] = [
    Status::Succeeded,
    Status::Exhausted,
    Status::Ignored,
    Status::Failed,
];

#[derive(Debug, Clone)]
enum Op {
    /// A create of one to three tasks (duplicate ids dropped), replacing existing ones if set.
    Create(bool, Vec<Add>),
    Claim(u8, u8),
    ForceClaim(u8, u8),
    ClaimNext(u8, Option<u8>),
    ClaimNextMany(u8, u8, Option<u8>),
    Succeed(u8),
    SucceedMany(u8, u8),
    Handoff(u8, u8, Option<u8>),
    Fail(u8, bool),
    Release(u8),
    Heartbeat(u8),
    Ignore(u8, bool),
    Retry(u8, bool),
    Report(u8, bool),
    Delete(u8),
    Purge(PurgeOp),
    Patch(u8, PatchShape),
    PutJob(JobChange),
    SetJobState(JobState, Expect),
    Jobs(Option<JobState>),
    Advance(u16),
}

/// A patch of a leased task's data: a JSON merge patch (RFC 7386), which
/// [`lifecycle::patch_data`] applies and never refuses for its shape.
#[derive(Debug, Clone, Copy)]
enum PatchShape {
    /// An object: its keys are set, and its nested object is merged into the one already there.
    Merge,
    /// `null` members: each removes its key (at the top and nested); one names an absent key,
    /// which stays absent. On data that is not an object, the result is `{}`.
    Remove,
    /// Not an object: it replaces `data` whole (an array, a number, a string, `null`).
    Replace(u8),
}

impl PatchShape {
    /// The patch; its values name `step`, so that every patch writes something new.
    fn patch(self, step: usize) -> Value {
        match self {
            PatchShape::Merge => json!({
                "patched": step,
                "nested": { "at": step, "big": 9_007_199_254_740_993u64, "half": 0.5, "ü": "✓" },
            }),
            PatchShape::Remove => json!({ "step": null, "nested": { "at": null }, "absent": null }),
            PatchShape::Replace(k) => match k % 4 {
                0 => json!([step, { "in_array": null }]),
                1 => json!(step),
                2 => json!(format!("step {step} ✓")),
                _ => Value::Null,
            },
        }
    }
}

fn patch_shape() -> impl Strategy<Value = PatchShape> {
    prop_oneof![
        2 => Just(PatchShape::Merge),
        1 => Just(PatchShape::Remove),
        1 => (0..4u8).prop_map(PatchShape::Replace),
    ]
}

fn stage() -> impl Strategy<Value = Option<u8>> {
    prop::option::weighted(0.3, 0..2u8)
}

fn add() -> impl Strategy<Value = Add> {
    (
        0..IDS,
        -1..2i8,
        prop::option::weighted(0.3, 0..4u8),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(id, priority, delay, own_limit)| Add {
            id,
            priority,
            delay,
            own_limit,
        })
}

fn purge() -> impl Strategy<Value = PurgeOp> {
    let statuses = prop_oneof![5 => 1..8u8, 1 => 0..16u8];
    let age = prop_oneof![2 => Just(None), 1 => Just(Some(0u8)), 1 => (1..90u8).prop_map(Some)];
    (prop::bool::weighted(0.3), statuses, age).prop_map(|(all_jobs, statuses, age)| PurgeOp {
        all_jobs,
        statuses,
        age,
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop::bool::weighted(0.35), prop::collection::vec(add(), 1..4))
            .prop_map(|(replace, adds)| Op::Create(replace, adds)),
        3 => (0..IDS, 0..2u8).prop_map(|(i, w)| Op::Claim(i, w)),
        1 => (0..IDS, 0..2u8).prop_map(|(i, w)| Op::ForceClaim(i, w)),
        3 => (0..2u8, stage()).prop_map(|(w, s)| Op::ClaimNext(w, s)),
        1 => (0..2u8, 2..4u8, stage()).prop_map(|(w, n, s)| Op::ClaimNextMany(w, n, s)),
        3 => any::<u8>().prop_map(Op::Succeed),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::SucceedMany(a, b)),
        3 => (any::<u8>(), 0..2u8, stage()).prop_map(|(l, w, s)| Op::Handoff(l, w, s)),
        3 => (any::<u8>(), any::<bool>()).prop_map(|(l, r)| Op::Fail(l, r)),
        1 => any::<u8>().prop_map(Op::Release),
        1 => any::<u8>().prop_map(Op::Heartbeat),
        1 => (0..IDS, any::<bool>()).prop_map(|(i, f)| Op::Ignore(i, f)),
        1 => (0..IDS, any::<bool>()).prop_map(|(i, f)| Op::Retry(i, f)),
        1 => (0..IDS, any::<bool>()).prop_map(|(i, s)| Op::Report(i, s)),
        1 => (0..IDS).prop_map(Op::Delete),
        2 => purge().prop_map(Op::Purge),
        2 => (any::<u8>(), patch_shape()).prop_map(|(l, p)| Op::Patch(l, p)),
        1 => job_record::job_change().prop_map(Op::PutJob),
        1 => (job_record::job_state(), job_record::expect()).prop_map(|(s, e)| Op::SetJobState(s, e)),
        1 => prop::option::weighted(0.7, job_record::job_state()).prop_map(Op::Jobs),
        3 => (1..45u16).prop_map(Op::Advance),
    ]
}

/// What an operation returned, reduced to what must agree.
#[derive(Debug, PartialEq)]
enum Answer {
    Ok(Option<String>),
    Err(ErrorKind, Option<Refusal>),
}

fn answer<T>(r: &Result<T>, id: impl Fn(&T) -> Option<String>) -> Answer {
    match r {
        Ok(v) => Answer::Ok(id(v)),
        Err(e) => Answer::Err(e.kind(), e.refusal().cloned()),
    }
}

/// The fields every backend must agree on (all but `version`, whose meaning a backend may
/// choose; `updated_at` is in: lists are ordered by it).
fn projection(t: &Task) -> serde_json::Value {
    json!({
        "status": t.status, "stage": t.stage, "stages": t.stages, "attempts": t.attempts,
        "max_attempts": t.max_attempts, "priority": t.priority, "token": t.token,
        "not_before": t.not_before, "lease": t.lease, "data": t.data, "output": t.output,
        "error": t.error, "history": t.history, "created_at": t.created_at,
        "updated_at": t.updated_at, "started_at": t.started_at, "finished_at": t.finished_at,
    })
}

/// `value` as JSON text with every object's keys sorted: a backend may keep keys in another
/// order (PostgreSQL's `jsonb` does), which does not make two values differ.
fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by_key(|(k, _)| *k);
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// The stage name a `claim_next` asks for.
fn stage_name(s: &Option<u8>) -> Option<&'static str> {
    s.map(|s| STAGES[usize::from(s) % STAGES.len()])
}

/// A `claim_next` request.
fn next_request(owner: &str, limit: usize, stage: &Option<u8>) -> ClaimNext {
    let req = ClaimNext::new(owner, LEASE).with_limit(limit);
    match stage_name(stage) {
        Some(s) => req.at_stage(s),
        None => req,
    }
}

struct Model {
    /// The sequence's job.
    name: JobName,
    /// Its record: `None` until a create, a report or a `put_job` makes it.
    job: Option<Job>,
    tasks: BTreeMap<TaskId, Task>,
}

impl Model {
    fn write(&mut self, t: Task) {
        self.tasks.insert(t.id.clone(), t);
    }

    /// The job record, made with the defaults at `now` when there is none yet (as `create` and
    /// `report` make it).
    fn ensure_job(&mut self, now: Timestamp) -> Job {
        self.job
            .get_or_insert_with(|| Job::new(self.name.clone(), now))
            .clone()
    }

    /// The backoff the sequence's workers fail with: the job record's, as a worker made by
    /// `Tracker::for_job` uses (the default before there is a record).
    fn backoff(&self) -> Backoff {
        self.job
            .as_ref()
            .map_or_else(Backoff::default, |j| j.backoff)
    }

    /// `create` of one task: new, left alone, or replaced.
    fn create(&mut self, new: &NewTask, mode: CreateMode, now: Timestamp) -> Result<Created> {
        let mut created = Created::default();
        let job = self.ensure_job(now);
        match self.tasks.get(&new.id) {
            None => {
                self.write(lifecycle::create_task(&job, new, now)?);
                created.created = 1;
            }
            Some(existing) if mode == CreateMode::Replace => {
                let t = lifecycle::replace_task(existing, &job, new, now)?;
                self.write(t);
                created.replaced = 1;
            }
            Some(_) => created.existing = 1,
        }
        Ok(created)
    }

    fn fenced(&mut self, lease: &Lease, rule: impl Fn(&Task) -> Result<Task>) -> Result<Task> {
        let stale = || Error::StaleLease {
            key: lease.key.to_string(),
            token: lease.token,
        };
        let current = self.tasks.get(&lease.key.id).ok_or_else(stale)?;
        let t = rule(current)?;
        self.write(t.clone());
        Ok(t)
    }

    fn claim(&mut self, key: &TaskKey, req: &Claim, now: Timestamp) -> Result<Claimed> {
        let current = self
            .tasks
            .get(&key.id)
            .ok_or_else(|| Error::NotFound(key.to_string()))?;
        match lifecycle::claim(current, req, now)? {
            ClaimDecision::Granted(c) => {
                self.write(c.task.clone());
                Ok(c)
            }
            ClaimDecision::Refused(reason) => Err(Error::Refused {
                key: key.to_string(),
                reason,
            }),
            ClaimDecision::Exhausted(t) => {
                self.write(t);
                Err(Error::Refused {
                    key: key.to_string(),
                    reason: Refusal::Exhausted,
                })
            }
        }
    }

    /// Up to `req.limit` tasks (at `req.stage`, if given) in claim order, as repeated single
    /// claims would take them.
    fn claim_next(&mut self, req: &ClaimNext, now: Timestamp) -> Result<Vec<Claimed>> {
        let claim = Claim::new(req.owner.clone(), req.lease_for);
        let mut order: Vec<&Task> = self
            .tasks
            .values()
            .filter(|t| t.is_claimable(now))
            .filter(|t| req.stage.is_none() || t.stage == req.stage)
            .collect();
        order.sort_by_key(|t| {
            (
                std::cmp::Reverse(t.priority),
                t.claimable_at(),
                t.id.clone(),
            )
        });
        let keys: Vec<TaskKey> = order.into_iter().map(Task::key).collect();
        let mut won = Vec::new();
        for key in keys {
            if won.len() == req.limit {
                break;
            }
            if let Ok(c) = self.claim(&key, &claim, now) {
                won.push(c);
            }
        }
        Ok(won)
    }

    /// Removes the finished tasks `req` selects; how many.
    fn purge(&mut self, req: &Purge) -> Result<u64> {
        req.validate()?;
        let before = self.tasks.len();
        self.tasks.retain(|_, t| !lifecycle::purgeable(t, req));
        Ok((before - self.tasks.len()) as u64)
    }
}

/// Runs, at most, of variations of a failing sequence while looking for a smaller one that fails
/// too.
const SHRINK_RUNS: usize = 300;

/// Random sequences of operations on the store agree, step by step, with the pure rules.
///
/// A sequence that disagrees is shrunk (proptest's shrinking, then dropping operations one at a
/// time; each candidate runs on a fresh job) and the case fails with the smallest failing
/// sequence found.
pub async fn random_operation_sequences_agree_with_the_reference_model(h: Harness) -> Result<()> {
    h.clock.set(EPOCH);
    let (sequences, mut runner) = depth(h.scaled(20))?;
    let strategy = (
        prop::bool::weighted(0.35),
        prop::collection::vec(op(), 20..70),
    );
    let mut runs = 0;
    for seq in 0..sequences {
        let mut tree = strategy
            .new_tree(&mut runner)
            .map_err(|e| Error::backend(format!("strategy: {e}")))?;
        let Some(first) = run_and_clean(&h, &mut runs, &tree.current()).await? else {
            continue;
        };
        let (mut smallest, mut why) = first.keep(tree.current());
        let mut budget = SHRINK_RUNS;
        let mut more = tree.simplify();
        while more && budget > SHRINK_RUNS / 2 {
            budget -= 1;
            more = match run_and_clean(&h, &mut runs, &tree.current()).await? {
                Some(failure) => {
                    (smallest, why) = failure.keep(tree.current());
                    tree.simplify()
                }
                None => tree.complicate(),
            };
        }
        // Proptest keeps the length within the strategy's range: drop operations one at a time
        // while the rest still fails, until none can go.
        let mut dropped = true;
        while dropped && budget > 0 {
            dropped = false;
            let mut i = smallest.1.len();
            while i > 0 && budget > 0 {
                i -= 1;
                budget -= 1;
                let mut fewer = smallest.clone();
                fewer.1.remove(i);
                if let Some(failure) = run_and_clean(&h, &mut runs, &fewer).await? {
                    (smallest, why) = failure.keep(fewer);
                    i = i.min(smallest.1.len());
                    dropped = true;
                }
            }
        }
        let (staged, ops) = smallest;
        panic!(
            "sequence {seq} disagrees with the reference model. Smallest failing sequence \
             ({} operations, pipeline job: {staged}): {ops:?}\n{why}",
            ops.len()
        );
    }
    Ok(())
}

/// How many sequences to run, and from which seed: `default` from proptest's deterministic seed,
/// unless `TASKTRACK_MODEL_CHECK_SEQUENCES` (a count) or `TASKTRACK_MODEL_CHECK_SEED` (0-255)
/// ask for a longer or a different search.
fn depth(default: usize) -> Result<(usize, TestRunner)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let bad = |name: &str, e: &dyn std::fmt::Display| Error::invalid(format!("{name}: {e}"));
    let sequences = match var("TASKTRACK_MODEL_CHECK_SEQUENCES") {
        Some(n) => n
            .parse()
            .map_err(|e| bad("TASKTRACK_MODEL_CHECK_SEQUENCES", &e))?,
        None => default,
    };
    let runner = match var("TASKTRACK_MODEL_CHECK_SEED") {
        Some(seed) => {
            let seed: u8 = seed
                .parse()
                .map_err(|e| bad("TASKTRACK_MODEL_CHECK_SEED", &e))?;
            let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]);
            TestRunner::new_with_rng(Config::default(), rng)
        }
        None => TestRunner::deterministic(),
    };
    Ok((sequences, runner))
}

/// How a sequence disagreed with the model.
struct Disagreement {
    /// How many operations ran, the one that disagreed included.
    ran: usize,
    what: String,
}

impl Disagreement {
    /// The sequence cut after the operation that disagreed, and what differed.
    fn keep(self, (staged, mut ops): (bool, Vec<Op>)) -> ((bool, Vec<Op>), String) {
        ops.truncate(self.ran);
        ((staged, ops), self.what)
    }
}

/// Runs one sequence on a fresh job, then removes the job: `Some` if the store and the model
/// disagreed.
async fn run_and_clean(
    h: &Harness,
    runs: &mut usize,
    (staged, ops): &(bool, Vec<Op>),
) -> Result<Option<Disagreement>> {
    let job = JobName::new(format!("{}-{runs}", h.job))?;
    *runs += 1;
    let mut ran = 0;
    let outcome = match run_sequence(h, &job, *staged, ops, &mut ran).await {
        Ok(disagreement) => disagreement,
        Err(e) => Some(format!("the store failed at step {}: {e}", ran.max(1) - 1)),
    };
    // Every lease has run out an hour later: the job goes, with all its tasks (a sequence that
    // never created its job has nothing to remove).
    h.advance(Duration::from_secs(3600));
    let cleaned = match h.store.delete_job(&job, h.now()).await {
        Ok(d) if (d.kept_leased, d.job_removed) == (0, true) => None,
        Ok(d) => Some(format!(
            "delete_job at the end, with no live lease left: {d:?}"
        )),
        Err(Error::NotFound(_)) => None,
        Err(e) => Some(format!("delete_job at the end: {e}")),
    };
    Ok(match (outcome, cleaned) {
        (Some(what), _) => Some(Disagreement { ran, what }),
        (None, Some(what)) => Some(Disagreement {
            ran: ops.len(),
            what,
        }),
        (None, None) => None,
    })
}

/// Runs `ops` on the store and on the model, counting them in `ran`: `Some(what differed)` at
/// the first disagreement.
async fn run_sequence(
    h: &Harness,
    job: &JobName,
    staged: bool,
    ops: &[Op],
    ran: &mut usize,
) -> Result<Option<String>> {
    let job = job.clone();
    let mut model = Model {
        name: job.clone(),
        job: None,
        tasks: BTreeMap::new(),
    };
    if staged {
        let spec = JobSpec {
            stages: Some(STAGES.map(String::from).to_vec()),
            ..JobSpec::default()
        };
        h.store.put_job(&job, &spec, h.now()).await?;
        model.job = Some(lifecycle::apply_job_spec(None, &job, &spec, h.now())?);
        if let Some(differs) = job_record::job_differs(h, &model, "the pipeline's put_job").await? {
            return Ok(Some(differs));
        }
    }
    let mut leases: Vec<Lease> = Vec::new();
    let owners = ["w0", "w1"];
    let key = |i: u8| TaskKey::new(job.clone(), tid(&format!("t{i}")));
    let pick =
        |leases: &Vec<Lease>, l: u8| leases.get(usize::from(l) % leases.len().max(1)).cloned();
    for (step, op) in ops.iter().enumerate() {
        *ran = step + 1;
        let now = h.now();
        let ctx = || format!("step {step} {op:?}");
        let (got, want) = match op {
            Op::Create(replace, adds) => {
                // Two attempts only, so that exhaustion (by failure and by expiry) is common.
                let mut news: Vec<NewTask> = Vec::new();
                for add in adds {
                    let new = NewTask {
                        not_before: add
                            .delay
                            .map(|d| now.plus(Duration::from_secs(10 * u64::from(d)))),
                        max_attempts: add.own_limit.then_some(2),
                        ..NewTask::new(key(add.id).id)
                            .with_priority(i32::from(add.priority))
                            .with_data(json!({ "step": step }))
                    };
                    if !news.iter().any(|n| n.id == new.id) {
                        news.push(new);
                    }
                }
                let mode = if *replace {
                    CreateMode::Replace
                } else {
                    CreateMode::SkipExisting
                };
                let got = h.store.create(&job, &news, mode, now).await;
                let want = news.iter().try_fold(Created::default(), |sum, new| {
                    let one = model.create(new, mode, now)?;
                    Ok::<_, Error>(Created {
                        created: sum.created + one.created,
                        existing: sum.existing + one.existing,
                        replaced: sum.replaced + one.replaced,
                    })
                });
                let counts = |c: &Created| Some(format!("{c:?}"));
                (answer(&got, counts), answer(&want, counts))
            }
            Op::Claim(i, w) | Op::ForceClaim(i, w) => {
                let req = Claim {
                    force: matches!(op, Op::ForceClaim(..)),
                    ..Claim::new(owners[usize::from(*w)], LEASE)
                };
                let got = h.store.claim(&key(*i), &req, now).await;
                let want = model.claim(&key(*i), &req, now);
                if let Ok(c) = &got {
                    leases.push(c.lease.clone());
                }
                (
                    answer(&got, |c| Some(c.lease.key.id.to_string())),
                    answer(&want, |c| Some(c.lease.key.id.to_string())),
                )
            }
            Op::ClaimNext(w, stage) | Op::ClaimNextMany(w, _, stage) => {
                let limit = match op {
                    Op::ClaimNextMany(_, n, _) => usize::from(*n),
                    _ => 1,
                };
                let req = next_request(owners[usize::from(*w)], limit, stage);
                let got = h.store.claim_next(&job, &req, now).await;
                let want = model.claim_next(&req, now);
                if let Ok(cs) = &got {
                    leases.extend(cs.iter().map(|c| c.lease.clone()));
                }
                let ids = |cs: &Vec<Claimed>| {
                    Some(
                        cs.iter()
                            .map(|c| c.task.id.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                    )
                };
                (answer(&got, ids), answer(&want, ids))
            }
            Op::Handoff(l, w, stage) => {
                let Some(lease) = pick(&leases, *l) else {
                    continue;
                };
                let next = next_request(owners[usize::from(*w)], 1, stage);
                let got = h
                    .store
                    .succeed_and_claim_next(&lease, json!(step), &next, now)
                    .await;
                if let Ok(done) = &got {
                    leases.extend(done.next.iter().map(|c| c.lease.clone()));
                }
                // The contract: the success, then (only if it was recorded) claim_next.
                let want = model
                    .fenced(&lease, |t| lifecycle::succeed(t, &lease, json!(step), now))
                    .and_then(|done| {
                        Ok(Handoff {
                            done,
                            next: model.claim_next(&next, now)?,
                        })
                    });
                let ids = |h: &Handoff| {
                    let next: Vec<String> = h.next.iter().map(|c| c.task.id.to_string()).collect();
                    Some(format!("{} then {}", h.done.id, next.join(",")))
                };
                (answer(&got, ids), answer(&want, ids))
            }
            Op::SucceedMany(a, b) => {
                let (Some(first), Some(second)) = (pick(&leases, *a), pick(&leases, *b)) else {
                    continue;
                };
                if first.key == second.key {
                    continue;
                }
                let done = [(first, json!(step)), (second, json!(-1))];
                let got = h.store.succeed_many(&done, now).await;
                let want: Vec<Result<Task>> = done
                    .iter()
                    .map(|(lease, output)| {
                        model.fenced(lease, |t| lifecycle::succeed(t, lease, output.clone(), now))
                    })
                    .collect();
                let each = |rs: &Vec<Result<Task>>| {
                    let kinds: Vec<String> = rs
                        .iter()
                        .map(|r| format!("{:?}", answer(r, |_| None)))
                        .collect();
                    Some(kinds.join("; "))
                };
                (answer(&got, each), Answer::Ok(each(&want)))
            }
            Op::Delete(i) => {
                let k = key(*i);
                let got = h.store.delete(&k, now).await;
                let want = match model.tasks.get(&k.id) {
                    None => Err(Error::NotFound(k.to_string())),
                    Some(t) => lifecycle::check_delete(t, now),
                };
                if want.is_ok() {
                    model.tasks.remove(&k.id);
                }
                (answer(&got, |_| None), answer(&want, |_| None))
            }
            Op::Purge(p) => {
                let req = Purge {
                    job: (!p.all_jobs).then(|| job.clone()),
                    statuses: PURGE_STATUSES
                        .iter()
                        .enumerate()
                        .filter(|(bit, _)| p.statuses & (1 << bit) != 0)
                        .map(|(_, s)| *s)
                        .collect(),
                    older_than: match p.age {
                        Some(secs) => now.minus(Duration::from_secs(u64::from(secs))),
                        None => now.plus(Duration::from_millis(1)),
                    },
                };
                let got = h.store.purge(&req).await;
                let want = model.purge(&req);
                let count = |n: &u64| Some(n.to_string());
                (answer(&got, count), answer(&want, count))
            }
            Op::Succeed(l) | Op::Fail(l, _) | Op::Release(l) | Op::Heartbeat(l) => {
                let Some(lease) = pick(&leases, *l) else {
                    continue;
                };
                let none = |_: &Task| None;
                match op {
                    Op::Succeed(_) => (
                        answer(&h.store.succeed(&lease, json!(step), now).await, none),
                        answer(
                            &model.fenced(&lease, |t| {
                                lifecycle::succeed(t, &lease, json!(step), now)
                            }),
                            none,
                        ),
                    ),
                    Op::Fail(_, retryable) => {
                        let req = Fail {
                            error: Failure::new("model", format!("step {step}")),
                            retryable: *retryable,
                            backoff: model.backoff(),
                        };
                        (
                            answer(&h.store.fail(&lease, &req, now).await, none),
                            answer(
                                &model.fenced(&lease, |t| lifecycle::fail(t, &lease, &req, now)),
                                none,
                            ),
                        )
                    }
                    Op::Release(_) => (
                        answer(&h.store.release(&lease, now).await, none),
                        answer(
                            &model.fenced(&lease, |t| lifecycle::release(t, &lease, now)),
                            none,
                        ),
                    ),
                    _ => (
                        answer(&h.store.heartbeat(&lease, LEASE, now).await, |_| None),
                        answer(
                            &model.fenced(&lease, |t| {
                                lifecycle::heartbeat(t, &lease, LEASE, now).map(|(t, _)| t)
                            }),
                            none,
                        ),
                    ),
                }
            }
            Op::Ignore(i, force) | Op::Retry(i, force) => {
                let k = key(*i);
                let got = match op {
                    Op::Ignore(..) => {
                        h.store
                            .ignore(
                                &k,
                                &Ignore {
                                    reason: None,
                                    force: *force,
                                },
                                now,
                            )
                            .await
                    }
                    _ => h.store.retry(&k, &Retry { force: *force }, now).await,
                };
                let want = match model.tasks.get(&k.id) {
                    None => Err(Error::NotFound(k.to_string())),
                    Some(t) => match op {
                        Op::Ignore(..) => lifecycle::ignore(
                            t,
                            &Ignore {
                                reason: None,
                                force: *force,
                            },
                            now,
                        ),
                        _ => lifecycle::retry(t, &Retry { force: *force }, now),
                    },
                };
                if let Ok(t) = &want {
                    model.write(t.clone());
                }
                (answer(&got, |_| None), answer(&want, |_| None))
            }
            Op::Report(i, success) => {
                let k = key(*i);
                let req = Report {
                    success: *success,
                    detail: Some(format!("step {step}")),
                };
                let got = h.store.report(&k, &req, now).await;
                let record = model.ensure_job(now);
                let want = lifecycle::report(model.tasks.get(&k.id), &record, &k, &req, now);
                if let Ok(t) = &want {
                    model.write(t.clone());
                }
                (answer(&got, |_| None), answer(&want, |_| None))
            }
            Op::Patch(l, shape) => {
                let Some(lease) = pick(&leases, *l) else {
                    continue;
                };
                let patch = shape.patch(step);
                let got = h.store.patch_data(&lease, &patch, now).await;
                let want = model.fenced(&lease, |t| lifecycle::patch_data(t, &lease, &patch, now));
                let task = |t: &Task| Some(canonical(&projection(t)));
                (answer(&got, task), answer(&want, task))
            }
            Op::PutJob(change) => job_record::put_job(h, &mut model, change, step, now).await,
            Op::SetJobState(to, expect) => {
                job_record::set_job_state(h, &mut model, *to, *expect, now).await
            }
            Op::Jobs(state) => job_record::jobs(h, &model, *state).await,
            Op::Advance(secs) => {
                h.advance(Duration::from_secs(u64::from(*secs)));
                continue;
            }
        };
        if got != want {
            return Ok(Some(format!(
                "answers differ at {}:\n store: {got:?}\n model: {want:?}",
                ctx()
            )));
        }
        for i in 0..IDS {
            let stored = match h.store.get(&key(i)).await {
                Ok(t) => Some(projection(&t)),
                Err(Error::NotFound(_)) => None,
                Err(e) => return Err(e),
            };
            let modelled = model.tasks.get(&key(i).id).map(projection);
            if stored != modelled {
                return Ok(Some(format!(
                    "task t{i} differs after {}:\n store: {}\n model: {}",
                    ctx(),
                    show(&stored),
                    show(&modelled)
                )));
            }
        }
        if let Some(differs) = counts_and_list_differ(h, &model, &ctx()).await? {
            return Ok(Some(differs));
        }
        if matches!(op, Op::PutJob(_) | Op::SetJobState(..)) {
            if let Some(differs) = job_record::job_differs(h, &model, &ctx()).await? {
                return Ok(Some(differs));
            }
        }
    }
    // Other operations must leave the record alone but for its implicit creation: one check
    // at the end finds a stray write, and shrinking then finds the operation that made it.
    job_record::job_differs(h, &model, "the last step").await
}

/// Whether the job's counts (per status and per stage, the amount's pending included) or its
/// listing (every task, in `(updated_at, id)` order, both directions) differ from the model's
/// after `ctx`: counts kept by counters or triggers must follow every transition, and a listing
/// must follow every write.
async fn counts_and_list_differ(h: &Harness, model: &Model, ctx: &str) -> Result<Option<String>> {
    let rows = model
        .tasks
        .values()
        .map(|t| (t.stage.clone(), Some(t.status), 1));
    let want = Counts::from_raw(model.name.clone(), model.job.as_ref(), rows);
    let mut got = h.store.counts(&model.name).await?;
    // A stage whose counters went back to zero may or may not be listed.
    got.by_stage.retain(|_, c| c.total() > 0);
    if got != want {
        return Ok(Some(format!(
            "counts differ after {ctx}:\n store: {got:?}\n model: {want:?}"
        )));
    }
    for newest_first in [false, true] {
        let q = TaskQuery {
            newest_first,
            ..TaskQuery::new(model.name.clone())
        };
        let (got, want) = (
            h.store.list(&q).await?,
            q.paginate(model.tasks.values().cloned()),
        );
        let (got, want) = (ids(&got), ids(&want));
        if got != want {
            return Ok(Some(format!(
                "list (newest_first = {newest_first}) differs after {ctx}:\n store: {got:?}\n model: {want:?}"
            )));
        }
    }
    Ok(None)
}

fn show(task: &Option<serde_json::Value>) -> String {
    task.as_ref()
        .map_or("(none)".to_string(), |t| t.to_string())
}
