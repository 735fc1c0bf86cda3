//! Conformance case: random operation sequences against a reference model.
//!
//! The reference model is a map of tasks moved only by the pure functions of
//! [`crate::lifecycle`]. Random sequences of operations (create, claim, forced claim, claim_next,
//! batch claims, succeed, `succeed_many`, the hand-off `succeed_and_claim_next`, fail, release,
//! heartbeat, ignore, retry,
//! report, delete, time passing — including stale leases) run
//! on the store and on the model; after every step the results and every task must agree. This is
//! what keeps a backend that restates rules natively (SQL, Lua) equal to the rules.

use super::*;
use crate::ErrorKind;
use crate::lifecycle::{self, ClaimDecision};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::json;
use std::collections::BTreeMap;

const IDS: u8 = 4;

#[derive(Debug, Clone)]
enum Op {
    Create(u8),
    Claim(u8, u8),
    ForceClaim(u8, u8),
    ClaimNext(u8),
    ClaimNextMany(u8, u8),
    Succeed(u8),
    SucceedMany(u8, u8),
    Handoff(u8, u8),
    Fail(u8, bool),
    Release(u8),
    Heartbeat(u8),
    Ignore(u8, bool),
    Retry(u8, bool),
    Report(u8, bool),
    Delete(u8),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..IDS).prop_map(Op::Create),
        3 => (0..IDS, 0..2u8).prop_map(|(i, w)| Op::Claim(i, w)),
        1 => (0..IDS, 0..2u8).prop_map(|(i, w)| Op::ForceClaim(i, w)),
        3 => (0..2u8).prop_map(Op::ClaimNext),
        1 => (0..2u8, 2..4u8).prop_map(|(w, n)| Op::ClaimNextMany(w, n)),
        3 => any::<u8>().prop_map(Op::Succeed),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::SucceedMany(a, b)),
        3 => (any::<u8>(), 0..2u8).prop_map(|(l, w)| Op::Handoff(l, w)),
        3 => (any::<u8>(), any::<bool>()).prop_map(|(l, r)| Op::Fail(l, r)),
        1 => any::<u8>().prop_map(Op::Release),
        1 => any::<u8>().prop_map(Op::Heartbeat),
        1 => (0..IDS, any::<bool>()).prop_map(|(i, f)| Op::Ignore(i, f)),
        1 => (0..IDS, any::<bool>()).prop_map(|(i, f)| Op::Retry(i, f)),
        1 => (0..IDS, any::<bool>()).prop_map(|(i, s)| Op::Report(i, s)),
        1 => (0..IDS).prop_map(Op::Delete),
        2 => (1..45u16).prop_map(Op::Advance),
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

/// The fields every backend must agree on.
fn projection(t: &Task) -> serde_json::Value {
    json!({
        "status": t.status, "stage": t.stage, "attempts": t.attempts, "max_attempts": t.max_attempts,
        "token": t.token, "not_before": t.not_before, "lease": t.lease, "data": t.data, "output": t.output,
        "error": t.error, "history": t.history, "started_at": t.started_at, "finished_at": t.finished_at,
    })
}

struct Model {
    job: Job,
    tasks: BTreeMap<TaskId, Task>,
}

impl Model {
    fn write(&mut self, t: Task) {
        self.tasks.insert(t.id.clone(), t);
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

    fn claim_next(&mut self, req: &Claim, now: Timestamp) -> Result<Vec<Claimed>> {
        self.claim_next_many(req, 1, now)
    }

    /// Up to `limit` tasks in claim order, as repeated single claims would take them.
    fn claim_next_many(
        &mut self,
        req: &Claim,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<Claimed>> {
        let mut order: Vec<&Task> = self
            .tasks
            .values()
            .filter(|t| t.is_claimable(now))
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
            if won.len() == limit {
                break;
            }
            if let Ok(c) = self.claim(&key, req, now) {
                won.push(c);
            }
        }
        Ok(won)
    }
}

/// Random sequences of operations on the store agree, step by step, with the pure rules.
pub async fn random_operation_sequences_agree_with_the_reference_model(h: Harness) -> Result<()> {
    let mut runner = TestRunner::deterministic();
    let sequences = h.scaled(40);
    for seq in 0..sequences {
        let ops = prop::collection::vec(op(), 10..40)
            .new_tree(&mut runner)
            .map_err(|e| Error::backend(format!("strategy: {e}")))?
            .current();
        let job = JobName::new(format!("{}-{seq}", h.job))?;
        run_sequence(&h, job, &ops).await?;
    }
    Ok(())
}

async fn run_sequence(h: &Harness, job: JobName, ops: &[Op]) -> Result<()> {
    let mut model = Model {
        job: Job::new(job.clone(), h.now()),
        tasks: BTreeMap::new(),
    };
    let mut leases: Vec<Lease> = Vec::new();
    let owners = ["w0", "w1"];
    let key = |i: u8| TaskKey::new(job.clone(), tid(&format!("t{i}")));
    let pick =
        |leases: &Vec<Lease>, l: u8| leases.get(usize::from(l) % leases.len().max(1)).cloned();
    let backoff = Backoff::default();
    for (step, op) in ops.iter().enumerate() {
        let now = h.now();
        let ctx = || format!("step {step} {op:?} of {ops:?}");
        let (got, want) = match op {
            Op::Create(i) => {
                // Two attempts only, so that exhaustion (by failure and by expiry) is common.
                let new = NewTask::new(key(*i).id).with_max_attempts(2);
                let got = h
                    .store
                    .create(
                        &job,
                        std::slice::from_ref(&new),
                        CreateMode::SkipExisting,
                        now,
                    )
                    .await;
                if !model.tasks.contains_key(&new.id) {
                    model.write(lifecycle::create_task(&model.job, &new, now)?);
                }
                (answer(&got, |_| None), Answer::Ok(None))
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
            Op::ClaimNext(w) | Op::ClaimNextMany(w, _) => {
                let limit = match op {
                    Op::ClaimNextMany(_, n) => usize::from(*n),
                    _ => 1,
                };
                let req = Claim::new(owners[usize::from(*w)], LEASE);
                let got = h
                    .store
                    .claim_next(
                        &job,
                        &ClaimNext::new(req.owner.clone(), LEASE).with_limit(limit),
                        now,
                    )
                    .await;
                let want = model.claim_next_many(&req, limit, now);
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
            Op::Handoff(l, w) => {
                let Some(lease) = pick(&leases, *l) else {
                    continue;
                };
                let next = ClaimNext::new(owners[usize::from(*w)], LEASE);
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
                        let req = Claim::new(next.owner.clone(), LEASE);
                        Ok(Handoff {
                            done,
                            next: model.claim_next(&req, now)?,
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
                            backoff,
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
                let want = lifecycle::report(model.tasks.get(&k.id), &model.job, &k, &req, now);
                if let Ok(t) = &want {
                    model.write(t.clone());
                }
                (answer(&got, |_| None), answer(&want, |_| None))
            }
            Op::Advance(secs) => {
                h.advance(Duration::from_secs(u64::from(*secs)));
                continue;
            }
        };
        assert_eq!(got, want, "answers differ at {}", ctx());
        for i in 0..IDS {
            let stored = match h.store.get(&key(i)).await {
                Ok(t) => Some(projection(&t)),
                Err(Error::NotFound(_)) => None,
                Err(e) => return Err(e),
            };
            let modelled = model.tasks.get(&key(i).id).map(projection);
            assert_eq!(stored, modelled, "task t{i} differs after {}", ctx());
        }
    }
    Ok(())
}
