//! Task hashes edited behind the store's back (by hand, or a partial write by another tool):
//! the scripts check a task's fields before writing anything for it, so a corrupt task never
//! makes a script fail halfway (Redis keeps a failed script's earlier writes). `claim_next` sets
//! a corrupt head aside and goes on; the single-task scripts refuse it as `Corrupt`, writing
//! nothing; counters always equal a recount of the task hashes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use common::{connection, create, new_tasks, scratch_store};
use redis::aio::MultiplexedConnection;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tasktrack_core::*;

/// Raw access to one job's keys, for corrupting them and for reading what the scripts wrote.
struct Raw {
    conn: MultiplexedConnection,
    prefix: String,
    base: String,
}

impl Raw {
    async fn new(prefix: &str, job: &str) -> Raw {
        Raw {
            conn: connection().await,
            prefix: format!("{prefix}:"),
            base: format!("{prefix}:{{{job}}}:"),
        }
    }

    fn task_key(&self, id: &str) -> String {
        format!("{}t:{id}", self.base)
    }

    async fn cmd<T: redis::FromRedisValue>(&mut self, cmd: &mut redis::Cmd) -> T {
        cmd.query_async(&mut self.conn).await.unwrap()
    }

    async fn hset(&mut self, id: &str, field: &str, value: &str) {
        let key = self.task_key(id);
        let _: i64 = self
            .cmd(redis::cmd("HSET").arg(key).arg(field).arg(value))
            .await;
    }

    async fn hdel(&mut self, id: &str, field: &str) {
        let key = self.task_key(id);
        let removed: i64 = self.cmd(redis::cmd("HDEL").arg(key).arg(field)).await;
        assert_eq!(removed, 1, "{id} had no field {field}");
    }

    async fn hash(&mut self, id: &str) -> BTreeMap<String, String> {
        let key = self.task_key(id);
        self.cmd(redis::cmd("HGETALL").arg(key)).await
    }

    /// The members of one of the job's sorted sets (`r`, `d`, `x`, ...), in order.
    async fn members(&mut self, set: &str) -> Vec<String> {
        let key = format!("{}{set}", self.base);
        self.cmd(redis::cmd("ZRANGE").arg(key).arg(0).arg(-1)).await
    }

    async fn keys(&mut self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self.cmd(redis::cmd("KEYS").arg(pattern)).await;
        keys.sort();
        keys
    }

    /// Every key of the store's prefix with its whole content: equal before and after a call
    /// means the call wrote nothing.
    async fn dump(&mut self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for key in self.keys(&format!("{}*", self.prefix)).await {
            let kind: String = self.cmd(redis::cmd("TYPE").arg(&key)).await;
            let content = match kind.as_str() {
                "hash" => {
                    let h: BTreeMap<String, String> =
                        self.cmd(redis::cmd("HGETALL").arg(&key)).await;
                    format!("{h:?}")
                }
                "zset" => {
                    let z: Vec<(String, String)> = self
                        .cmd(
                            redis::cmd("ZRANGE")
                                .arg(&key)
                                .arg(0)
                                .arg(-1)
                                .arg("WITHSCORES"),
                        )
                        .await;
                    format!("{z:?}")
                }
                other => panic!("unexpected key type {other} of {key}"),
            };
            out.insert(key, content);
        }
        out
    }

    /// The job's counters hash (zeros left out).
    async fn counters(&mut self) -> BTreeMap<String, i64> {
        let key = format!("{}c", self.base);
        let all: BTreeMap<String, i64> = self.cmd(redis::cmd("HGETALL").arg(key)).await;
        all.into_iter().filter(|(_, n)| *n != 0).collect()
    }

    /// The counters a full recount of the task hashes gives (`status` or `status:stage`).
    async fn recount(&mut self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for key in self.keys(&format!("{}t:*", self.base)).await {
            let (status, stage): (Option<String>, Option<String>) = self
                .cmd(redis::cmd("HMGET").arg(&key).arg("status").arg("stage"))
                .await;
            let status = status.unwrap_or_else(|| panic!("{key} has no status"));
            let counter = match stage {
                Some(stage) => format!("{status}:{stage}"),
                None => status,
            };
            *out.entry(counter).or_default() += 1;
        }
        out
    }

    /// The ids of the task hashes whose status is `status`.
    async fn ids_in(&mut self, status: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let start = self.task_key("");
        for key in self.keys(&format!("{}t:*", self.base)).await {
            let s: Option<String> = self.cmd(redis::cmd("HGET").arg(&key).arg("status")).await;
            if s.as_deref() == Some(status) {
                out.insert(key[start.len()..].to_string());
            }
        }
        out
    }
}

fn ids(claimed: &[Claimed]) -> Vec<&str> {
    claimed.iter().map(|c| c.task.id.as_str()).collect()
}

fn assert_corrupt<T: std::fmt::Debug>(result: Result<T>, location: &str, field: &str) {
    match result {
        Err(Error::Corrupt {
            location: at,
            message,
        }) => {
            assert_eq!(at, location);
            assert!(
                message.contains(&format!("field {field} ")),
                "{message} should name {field}"
            );
        }
        other => panic!("expected Corrupt naming {field} at {location}, got {other:?}"),
    }
}

/// Six tasks by priority, three of them corrupt (`attempts` not a number, `priority` not a
/// number, `token` missing): one `claim_next(3)` grants exactly the three healthy ones, writes
/// nothing to the corrupt ones but the set-aside marker, leaves no task in_progress that it did
/// not return, and keeps the counters equal to a recount. A repaired task comes back.
#[tokio::test]
async fn claim_next_sets_corrupt_heads_aside_and_grants_the_healthy_ones() {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("heads").unwrap();
    let now = Timestamp::from_millis(10_000);
    let news: Vec<NewTask> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .zip([6, 5, 4, 3, 2, 1])
        .map(|(id, p)| NewTask::new(TaskId::new(*id).unwrap()).with_priority(p))
        .collect();
    create(&*store, &job, &news, now).await;
    let mut raw = Raw::new(scratch.0.prefix(), "heads").await;
    raw.hset("a", "attempts", "many").await;
    raw.hset("c", "priority", "high").await;
    raw.hdel("e", "token").await;
    let mut before = BTreeMap::new();
    for id in ["a", "c", "e"] {
        before.insert(id, raw.hash(id).await);
    }

    let req = ClaimNext::new("w", Duration::from_secs(60)).with_limit(3);
    let claimed = store.claim_next(&job, &req, now).await.unwrap();
    assert_eq!(ids(&claimed), ["b", "d", "f"]);
    for c in &claimed {
        assert_eq!((c.task.status, c.task.attempts), (Status::InProgress, 1));
        assert_eq!(store.get(&c.task.key()).await.unwrap(), c.task);
    }
    // None orphaned: what is in_progress is exactly what the call returned.
    let held: BTreeSet<String> = ids(&claimed).into_iter().map(String::from).collect();
    assert_eq!(raw.ids_in("in_progress").await, held);
    // The corrupt tasks: untouched but for the field naming what is wrong, out of the queues,
    // listed in the set-aside set.
    for (id, field) in [("a", "attempts"), ("c", "priority"), ("e", "token")] {
        let mut expected = before[id].clone();
        expected.insert("qx".to_string(), field.to_string());
        assert_eq!(raw.hash(id).await, expected, "{id}");
    }
    assert_eq!(raw.members("x").await, ["a", "c", "e"]);
    assert!(raw.members("r").await.is_empty());
    let leases: Vec<String> = raw.members("d").await;
    assert_eq!(leases.len(), 3, "{leases:?}");
    assert_eq!(raw.counters().await, raw.recount().await);
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(
        (counts.by_status.pending, counts.by_status.in_progress),
        (3, 3)
    );

    // The job stays claimable: nothing is left, and that is an empty answer, not an error.
    let again = store.claim_next(&job, &req, now).await.unwrap();
    assert!(again.is_empty(), "{again:?}");

    // Repaired by hand, a task comes back with its next write through the store.
    raw.hset("a", "attempts", "0").await;
    let a = TaskKey::parse("heads", "a").unwrap();
    let retried = store.retry(&a, &Retry { force: false }, now).await.unwrap();
    assert_eq!(retried.status, Status::Pending);
    assert!(!raw.hash("a").await.contains_key("qx"));
    assert_eq!(raw.members("x").await, ["c", "e"]);
    let claimed = store.claim_next(&job, &req, now).await.unwrap();
    assert_eq!(ids(&claimed), ["a"]);
    assert_eq!(raw.counters().await, raw.recount().await);
}

/// JSON the scripts pass through unparsed (`data`, here) can only be checked by the client: a
/// granted task that does not decode is left out of the answer instead of failing the call (and
/// losing the other grants with it). It is not lost: its lease runs out, each later grant counts
/// an attempt, and at its last one the claim script exhausts it, so it never blocks the job.
#[tokio::test]
async fn a_granted_task_whose_json_does_not_decode_is_left_out_not_an_error() {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("json").unwrap();
    let mut now = Timestamp::from_millis(10_000);
    let news: Vec<NewTask> = ["a", "b", "c"]
        .iter()
        .zip([3, 2, 1])
        .map(|(id, p)| {
            NewTask::new(TaskId::new(*id).unwrap())
                .with_priority(p)
                .with_max_attempts(2)
        })
        .collect();
    create(&*store, &job, &news, now).await;
    let mut raw = Raw::new(scratch.0.prefix(), "json").await;
    raw.hset("b", "data", "{not json").await;

    let lease = Duration::from_secs(60);
    let req = ClaimNext::new("w", lease).with_limit(3);
    let claimed = store.claim_next(&job, &req, now).await.unwrap();
    assert_eq!(ids(&claimed), ["a", "c"], "the healthy grants are kept");
    let b = TaskKey::parse("json", "b").unwrap();
    assert!(matches!(store.get(&b).await, Err(Error::Corrupt { .. })));

    // Two more lapsed leases: the second grant is its last attempt, then it is exhausted.
    for _ in 0..2 {
        now = now.plus(lease).plus(Duration::from_secs(1));
        let again = store.claim_next(&job, &req, now).await.unwrap();
        assert!(again.iter().all(|c| c.task.id.as_str() != "b"), "{again:?}");
    }
    assert_eq!(raw.hash("b").await["status"], "exhausted");
    assert_eq!(raw.counters().await, raw.recount().await);
}

/// `delete` removes a damaged task whatever its lease says (the shared case), with its JSON
/// damaged as above: a claim grants it and leaves it out of its answer, so it is deleted in
/// progress under a lease nobody heard of.
#[tokio::test]
async fn a_damaged_task_can_be_deleted() {
    deletes_tasks_damaged_in("data", "{not json").await;
}

/// The same with a field the scripts check: a claim sets the task aside (the set `x`), and
/// `delete` takes it out of there too.
#[tokio::test]
async fn a_task_set_aside_as_corrupt_can_be_deleted() {
    deletes_tasks_damaged_in("attempts", "many").await;
}

/// A list goes past a damaged task and names it in the page (the shared case), with its JSON
/// damaged as above: placed by its listing entry, it is named once in each walk, in both orders
/// and under a status filter; `delete_job` then removes it with the others and leaves no key
/// naming any of them.
#[tokio::test]
async fn a_damaged_task_is_named_by_lists_not_hiding_the_others() {
    lists_name_tasks_damaged_in("data", "{not json").await;
}

/// The same with a field the scripts check (and a claim would set aside): its listing entry is
/// as readable, so it is placed and named the same way.
#[tokio::test]
async fn a_task_with_a_corrupt_field_is_named_by_lists_not_hiding_the_others() {
    lists_name_tasks_damaged_in("attempts", "many").await;
}

/// A hand that damages a task by setting `field` of its hash to `value`.
fn damage_by(
    prefix: &str,
    field: &'static str,
    value: &'static str,
) -> impl Fn(TaskKey) -> Pin<Box<dyn Future<Output = ()>>> {
    let prefix = prefix.to_string();
    move |key: TaskKey| {
        let prefix = prefix.clone();
        Box::pin(async move {
            let mut raw = Raw::new(&prefix, key.job.as_str()).await;
            raw.hset(key.id.as_str(), field, value).await;
        })
    }
}

/// Runs the shared delete case with `field` set to `value` by hand as its damage, then checks
/// that no key of the job still names a deleted task.
async fn deletes_tasks_damaged_in(field: &'static str, value: &'static str) {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let h = testkit::Harness::new(store, "a_damaged_task_can_be_deleted", 1.0);
    let job = h.job.clone();
    let prefix = scratch.0.prefix().to_string();
    testkit::damaged::a_damaged_task_can_be_deleted(h, damage_by(&prefix, field, value))
        .await
        .unwrap();
    assert_nothing_names_a_deleted_task(&prefix, &job).await;
}

/// Runs the shared listing case with `field` set to `value` by hand as its damage, then checks
/// that `delete_job` left no key of the job naming a task.
async fn lists_name_tasks_damaged_in(field: &'static str, value: &'static str) {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let h = testkit::Harness::new(store, "a_damaged_task_is_named_by_lists", 1.0);
    let job = h.job.clone();
    let prefix = scratch.0.prefix().to_string();
    testkit::damaged::a_damaged_task_is_named_by_lists_not_hiding_the_others(
        h,
        damage_by(&prefix, field, value),
    )
    .await
    .unwrap();
    assert_nothing_names_a_deleted_task(&prefix, &job).await;
    let mut raw = Raw::new(&prefix, job.as_str()).await;
    assert_eq!(
        raw.keys(&format!("{}*", raw.base)).await,
        Vec::<String>::new()
    );
}

/// No key of `job` still names a deleted task: counters equal a recount, the listing sets hold
/// one entry per task hash, the queues and the set-aside set none of a hash that is gone.
async fn assert_nothing_names_a_deleted_task(prefix: &str, job: &JobName) {
    let mut raw = Raw::new(prefix, job.as_str()).await;
    assert_eq!(raw.counters().await, raw.recount().await);
    let start = raw.task_key("").len();
    let hashes: BTreeSet<String> = raw
        .keys(&format!("{}*", raw.task_key("")))
        .await
        .into_iter()
        .map(|k| k[start..].to_string())
        .collect();
    let mut listed = Vec::new();
    for status in Status::ALL {
        listed.extend(raw.members(&format!("s:{}", status.as_str())).await);
    }
    let mut listed: Vec<String> = listed.iter().map(|m| m[12..].to_string()).collect();
    listed.sort();
    assert_eq!(listed, hashes.iter().cloned().collect::<Vec<_>>());
    for set in ["r", "d"] {
        for m in raw.members(set).await {
            assert!(hashes.contains(&m[20..]), "{set} holds {m}");
        }
    }
    assert_eq!(raw.members("x").await, Vec::<String>::new());
}

/// A task whose `status` and `updated` were edited too: its listing entry cannot be named from
/// them, so `delete` finds it by scanning the job's listing sets for its id, matched literally
/// (`t?` must not take `tx`'s entry), and moves the counter of the status it was listed under.
#[tokio::test]
async fn a_task_damaged_in_its_status_is_deleted_with_its_listing_entry() {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("unnamed").unwrap();
    let now = Timestamp::from_millis(10_000);
    create(&*store, &job, &new_tasks(&["t?", "tx"]), now).await;
    let mut raw = Raw::new(scratch.0.prefix(), "unnamed").await;
    raw.hset("t?", "status", "bogus").await;
    raw.hset("t?", "updated", "yesterday").await;
    let key = TaskKey::parse("unnamed", "t?").unwrap();
    assert!(matches!(store.get(&key).await, Err(Error::Corrupt { .. })));

    store.delete(&key, now).await.unwrap();
    assert!(matches!(store.get(&key).await, Err(Error::NotFound(_))));
    assert_eq!(raw.counters().await, raw.recount().await);
    let listed = raw.members("s:pending").await;
    assert!(listed.len() == 1 && listed[0].ends_with("tx"), "{listed:?}");
    assert_eq!(raw.members("r").await.len(), 1);
    let page = store.list(&TaskQuery::new(job)).await.unwrap();
    assert_eq!(testkit::ids(&page), ["tx"]);
}

/// A task whose `status` was edited (into one nobody knows, or into another whose set does not
/// hold it) but whose `updated` still reads: `delete` names its listing entry from `updated`
/// in each listing set in turn, scanning none (a scan reads every entry of the job), and moves
/// the counter of the status it was listed under.
#[tokio::test]
async fn a_task_damaged_in_its_status_alone_is_deleted_without_a_scan() {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("named").unwrap();
    let now = Timestamp::from_millis(10_000);
    create(&*store, &job, &new_tasks(&["lost", "moved", "kept"]), now).await;
    let mut raw = Raw::new(scratch.0.prefix(), "named").await;
    raw.hset("lost", "status", "bogus").await;
    raw.hset("moved", "status", "succeeded").await;
    raw.hset("moved", "data", "{not json").await;
    let commands = commands_during(scratch.0.prefix(), async {
        for id in ["lost", "moved"] {
            let key = TaskKey::parse("named", id).unwrap();
            store.delete(&key, now).await.unwrap();
        }
    })
    .await;
    let named = |name: &str| {
        let quoted = format!("\"{name}\"");
        commands
            .iter()
            .filter(|c| c.to_ascii_lowercase().contains(&quoted))
            .count()
    };
    // MONITOR shows the scripts' commands: both hashes were deleted by one.
    assert_eq!(named("del"), 2, "{commands:#?}");
    assert_eq!(named("zscan"), 0, "{commands:#?}");
    assert_eq!(raw.counters().await, raw.recount().await);
    let listed = raw.members("s:pending").await;
    assert!(
        listed.len() == 1 && listed[0].ends_with("kept"),
        "{listed:?}"
    );
    let page = store.list(&TaskQuery::new(job)).await.unwrap();
    assert_eq!(testkit::ids(&page), ["kept"]);
}

/// The commands the server ran on keys under `prefix` while `act` ran, as MONITOR prints them
/// (commands run by scripts included).
async fn commands_during(prefix: &str, act: impl Future<Output = ()>) -> Vec<String> {
    use futures::StreamExt;
    let client = redis::Client::open(common::url()).unwrap();
    let mut lines = client
        .get_async_monitor()
        .await
        .unwrap()
        .into_on_message::<String>();
    act.await;
    // A command of our own marks the end: MONITOR prints commands in the order they ran.
    let end = format!("{prefix}:end-of-commands");
    let mut conn = connection().await;
    let _: String = redis::cmd("ECHO")
        .arg(&end)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next().await {
            if line.contains(&end) {
                break;
            }
            if line.contains(prefix) {
                seen.push(line);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("MONITOR never showed the end marker");
    seen
}

/// A task whose `status` field is edited by hand into one nobody knows (the shared case): the
/// counters still count it under the status a script last wrote, lists name it, and `delete`
/// moves that counter (found through its listing entry), leaving counters equal to a recount.
#[tokio::test]
async fn a_task_whose_status_does_not_read_still_counts() {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let h = testkit::Harness::new(store, "a_task_whose_status_does_not_read", 1.0);
    let job = h.job.clone();
    let prefix = scratch.0.prefix().to_string();
    let damage = damage_by(&prefix, "status", "lost");
    let counted = testkit::damaged::StatusUnread::CountedAsLastWritten;
    testkit::damaged::a_task_whose_status_does_not_read_still_counts(h, damage, counted)
        .await
        .unwrap();
    assert_nothing_names_a_deleted_task(&prefix, &job).await;
}

/// A hand-off whose completed task does not decode once written (its `data` edited by hand):
/// the call answers `Corrupt`, and the task it granted is released, not left held by a lease
/// its worker never heard of (which would expire as a failed attempt).
#[tokio::test]
async fn a_hand_off_that_answers_an_error_releases_what_it_granted() {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("handoff").unwrap();
    let now = Timestamp::from_millis(10_000);
    create(&*store, &job, &new_tasks(&["a", "b"]), now).await;
    let req = ClaimNext::new("w", Duration::from_secs(60));
    let a = store.claim_next(&job, &req, now).await.unwrap().remove(0);
    assert_eq!(a.task.id.as_str(), "a");
    let mut raw = Raw::new(scratch.0.prefix(), "handoff").await;
    raw.hset("a", "data", "{not json").await;

    let later = now.plus(Duration::from_secs(1));
    let got = store
        .succeed_and_claim_next(&a.lease, json!("out"), &req, later)
        .await;
    assert!(matches!(got, Err(Error::Corrupt { .. })), "{got:?}");
    assert_eq!(raw.hash("a").await["status"], "succeeded");
    let b = store
        .get(&TaskKey::parse("handoff", "b").unwrap())
        .await
        .unwrap();
    assert_eq!((b.status, b.lease), (Status::Pending, None), "released");
    assert_eq!(b.attempts, 0, "a released claim is not an attempt");
    assert_eq!(raw.counters().await, raw.recount().await);
}

/// A pipeline task is queued twice (the job's queue and its stage's): set aside from one, it
/// leaves both, so a claim on its stage does not meet it again. A lapsed lease of a corrupt task
/// is set aside too, not expired: the healthy lapsed lease next to it is expired and reclaimed.
#[tokio::test]
async fn corrupt_staged_tasks_and_lapsed_leases_are_set_aside_once() {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("piped").unwrap();
    let at = Timestamp::from_millis;
    let spec = JobSpec {
        stages: Some(vec!["one".into(), "two".into()]),
        ..Default::default()
    };
    store.put_job(&job, &spec, at(1_000)).await.unwrap();
    create(&*store, &job, &new_tasks(&["p", "q", "s", "t"]), at(1_000)).await;
    let mut raw = Raw::new(scratch.0.prefix(), "piped").await;

    // p and q leased for one second; then q's `attempts` is corrupted.
    let short = ClaimNext::new("w1", Duration::from_secs(1)).with_limit(2);
    let held = store.claim_next(&job, &short, at(1_000)).await.unwrap();
    assert_eq!(ids(&held), ["p", "q"]);
    raw.hset("q", "attempts", "1.5").await;
    // s's `created` is corrupted while it waits in both queues.
    raw.hset("s", "created", "yesterday").await;

    // At 3,000 both leases have lapsed. Queue order: s, t (claimable since 1,000), then p, q
    // (since their expiry at 2,000). s is set aside, t claimed, p expired and reclaimed, q set
    // aside as it is.
    let req = ClaimNext::new("w2", Duration::from_secs(60)).with_limit(3);
    let q_before = raw.hash("q").await;
    let got = store.claim_next(&job, &req, at(3_000)).await.unwrap();
    assert_eq!(ids(&got), ["t", "p"]);
    let p = &got[1].task;
    assert_eq!(
        (p.attempts, p.lease.as_ref().unwrap().owner.as_str()),
        (2, "w2")
    );
    assert_eq!(p.history.last().unwrap().outcome, Outcome::LeaseExpired);
    let mut q_expected = q_before;
    q_expected.insert("qx".into(), "attempts".into());
    assert_eq!(raw.hash("q").await, q_expected);
    assert_eq!(raw.members("x").await, ["q", "s"]);
    for set in ["r", "d", "r:one", "d:one"] {
        let members = raw.members(set).await;
        assert!(
            members
                .iter()
                .all(|m| !m.ends_with('q') && !m.ends_with('s')),
            "{set}: {members:?}"
        );
    }
    let on_stage = ClaimNext::new("w3", Duration::from_secs(60))
        .with_limit(3)
        .at_stage("one");
    assert!(
        store
            .claim_next(&job, &on_stage, at(3_000))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        raw.hash("s").await.get("qx").map(String::as_str),
        Some("created")
    );
    assert_eq!(raw.counters().await, raw.recount().await);
    let in_progress: BTreeSet<String> = ["p", "q", "t"].map(String::from).into();
    assert_eq!(raw.ids_in("in_progress").await, in_progress);
}

/// succeed, heartbeat, fail, the hand-off and a batched succeed on a task with a corrupt field:
/// `Corrupt` naming the task's key and the field, and nothing written (every key of the store
/// reads the same before and after); in a batch, only that lease's entry.
#[tokio::test]
async fn fenced_calls_on_a_corrupt_task_are_corrupt_and_write_nothing() {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("fenced").unwrap();
    let now = Timestamp::from_millis(50_000);
    create(&*store, &job, &new_tasks(&["x", "y", "z"]), now).await;
    let req = ClaimNext::new("w", Duration::from_secs(60)).with_limit(3);
    let leases: Vec<Lease> = store
        .claim_next(&job, &req, now)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.lease)
        .collect();
    assert_eq!(leases.len(), 3);
    // A pending task, so that a hand-off that wrongly went on would have something to claim.
    create(&*store, &job, &new_tasks(&["w"]), now).await;
    let mut raw = Raw::new(scratch.0.prefix(), "fenced").await;
    let y = &leases[1];
    let hkey = raw.task_key("y");
    let later = Timestamp::from_millis(51_000);

    // (field, corrupt value or None to remove it)
    let cases: [(&str, Option<&str>); 14] = [
        ("attempts", Some("many")),
        ("attempts", Some("-1")),
        ("attempts", Some(" 1")),
        ("max_attempts", Some("0x3")),
        ("priority", Some("99999999999")),
        ("token", Some("")),
        ("version", Some("v7")),
        ("version", None),
        ("status", Some("bogus")),
        ("status", None),
        ("created", None),
        ("ltoken", Some("1e0")),
        ("exp", Some("soon")),
        ("acq", None),
    ];
    for (field, value) in cases {
        let original = raw.hash("y").await.get(field).cloned().unwrap();
        match value {
            Some(v) => raw.hset("y", field, v).await,
            None => raw.hdel("y", field).await,
        }
        let before = raw.dump().await;
        let what = format!("{field} = {value:?}");
        assert_corrupt(store.succeed(y, json!("out"), later).await, &hkey, field);
        assert_corrupt(
            store.heartbeat(y, Duration::from_secs(60), later).await,
            &hkey,
            field,
        );
        let fail = Fail::new(Failure::new("boom", "it broke"));
        assert_corrupt(store.fail(y, &fail, later).await, &hkey, field);
        assert_corrupt(
            store
                .succeed_and_claim_next(y, json!("out"), &req, later)
                .await,
            &hkey,
            field,
        );
        // The compare-and-set paths read the task first: the same error, from the decoding.
        assert_corrupt(store.release(y, later).await, &hkey, field);
        assert_eq!(raw.dump().await, before, "{what}: something was written");
        raw.hset("y", field, &original).await;
    }

    // `stages`, read by succeed only when the task has a stage.
    raw.hset("y", "stage", "one").await;
    raw.hset("y", "stages", "not json").await;
    let before = raw.dump().await;
    assert_corrupt(store.succeed(y, json!("out"), later).await, &hkey, "stages");
    assert_eq!(raw.dump().await, before);
    raw.hdel("y", "stage").await;
    raw.hset("y", "stages", "[]").await;

    // In a batch, the corrupt lease's entry alone is Corrupt; the others succeed, counted.
    raw.hset("y", "token", "one").await;
    let y_before = raw.hash("y").await;
    let done: Vec<(Lease, serde_json::Value)> =
        leases.iter().map(|l| (l.clone(), json!("out"))).collect();
    let results = store.succeed_many(&done, later).await.unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].as_ref().unwrap().status, Status::Succeeded);
    assert_corrupt(results[1].clone(), &hkey, "token");
    assert_eq!(results[2].as_ref().unwrap().status, Status::Succeeded);
    assert_eq!(raw.hash("y").await, y_before);
    assert_eq!(raw.counters().await, raw.recount().await);

    // Repaired, the same lease still holds the task.
    raw.hset("y", "token", &y.token.to_string()).await;
    let task = store.succeed(y, json!("out"), later).await.unwrap();
    assert_eq!(task.status, Status::Succeeded);
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(
        (counts.by_status.succeeded, counts.by_status.pending),
        (3, 1)
    );
    assert_eq!(raw.counters().await, raw.recount().await);
}

/// An attempt count edited by hand into a form Rust still reads ("+1", "01") passes the scripts'
/// checks; the history record a script writes from it must still be JSON (it used to splice the
/// text in as it was, leaving the task's history, and so the task, unreadable for good).
#[tokio::test]
async fn an_attempt_count_edited_into_another_spelling_is_recorded_as_a_number() {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("spelled").unwrap();
    let now = Timestamp::from_millis(10_000);
    create(&*store, &job, &new_tasks(&["a", "b"]), now).await;
    let lease = Duration::from_secs(60);
    let req = ClaimNext::new("w", lease).with_limit(2);
    let claimed = store.claim_next(&job, &req, now).await.unwrap();
    assert_eq!(ids(&claimed), ["a", "b"]);
    let mut raw = Raw::new(scratch.0.prefix(), "spelled").await;
    raw.hset("a", "attempts", "+1").await;
    raw.hset("b", "attempts", "01").await;

    // succeed.lua records a's success; claim_next.lua records b's lapsed lease.
    let done = store
        .succeed(&claimed[0].lease, json!("out"), now)
        .await
        .unwrap();
    assert_eq!(done.history.last().map(|h| h.attempt), Some(1));
    let later = now.plus(lease).plus(Duration::from_secs(1));
    let again = store.claim_next(&job, &req, later).await.unwrap();
    assert_eq!(ids(&again), ["b"]);
    for (id, outcome) in [("a", Outcome::Succeeded), ("b", Outcome::LeaseExpired)] {
        let task = store
            .get(&TaskKey::parse("spelled", id).unwrap())
            .await
            .unwrap();
        let last = task.history.last().unwrap();
        assert_eq!((last.attempt, last.outcome), (1, outcome), "{id}");
    }
}

/// A number field edited by hand into another spelling of the same number (`01`, `+1`) still
/// reads, and the compare-and-set writes compare it as that number: `retry` and `delete` of
/// the task succeed instead of giving up as if every write conflicted.
#[tokio::test]
async fn a_version_spelled_differently_still_matches_its_writes() {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("spelled").unwrap();
    let now = Timestamp::from_millis(10_000);
    create(&*store, &job, &new_tasks(&["a", "b"]), now).await;
    let mut raw = Raw::new(scratch.0.prefix(), "spelled").await;
    raw.hset("a", "version", "01").await;
    raw.hset("b", "version", "+1").await;
    let a = TaskKey::parse("spelled", "a").unwrap();
    assert_eq!(store.get(&a).await.unwrap().version, 1);
    let retried = store.retry(&a, &Retry::default(), now).await.unwrap();
    assert_eq!(retried.version, 2);
    let b = TaskKey::parse("spelled", "b").unwrap();
    store.delete(&b, now).await.unwrap();
    assert!(matches!(store.get(&b).await, Err(Error::NotFound(_))));
}

/// A field whose value is not UTF-8 (written by another tool: Redis keeps any bytes) makes its
/// task `Corrupt` naming the key and the field, like any field that does not decode, instead of
/// a failed reply conversion that failed the whole call: `get` and `delete` of the task, every
/// `list` page of its job, and every `claim_next` meeting it, which left the leases it had
/// granted in the same call held by nobody. A queue entry whose id is not UTF-8 is left out of
/// the claim's answer the same way.
#[tokio::test]
async fn a_field_that_is_not_utf8_makes_its_task_corrupt_not_its_job_unreadable() {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("bytes").unwrap();
    let now = Timestamp::from_millis(10_000);
    let news: Vec<NewTask> = ["a", "b", "c", "d"]
        .iter()
        .zip([4, 3, 2, 1])
        .map(|(id, p)| NewTask::new(TaskId::new(*id).unwrap()).with_priority(p))
        .collect();
    create(&*store, &job, &news, now).await;
    let mut raw = Raw::new(scratch.0.prefix(), "bytes").await;
    let not_utf8: &[u8] = b"\"\xff\"";
    let b_key = raw.task_key("b");
    let _: i64 = raw
        .cmd(redis::cmd("HSET").arg(&b_key).arg("data").arg(not_utf8))
        .await;
    rename_task(&mut raw, "c", b"c\xff").await;

    let b = TaskKey::parse("bytes", "b").unwrap();
    match store.get(&b).await {
        Err(Error::Corrupt { location, message }) => {
            assert_eq!(location, b_key);
            assert!(message.contains("field data"), "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let page = store.list(&TaskQuery::new(job.clone())).await.unwrap();
    let unreadable: Vec<&str> = page.unreadable.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(
        (testkit::ids(&page), unreadable),
        (vec!["a", "d"], vec!["b"])
    );

    let req = ClaimNext::new("w", Duration::from_secs(60)).with_limit(4);
    let claimed = store.claim_next(&job, &req, now).await.unwrap();
    assert_eq!(ids(&claimed), ["a", "d"], "the healthy grants are kept");

    store.delete(&b, now).await.unwrap();
    assert!(matches!(store.get(&b).await, Err(Error::NotFound(_))));
    // What the claim granted stays counted in progress (the two left out until their leases
    // run out, as a task whose JSON does not decode); `b` left with its counter.
    let in_progress = BTreeMap::from([("in_progress".to_string(), 3)]);
    assert_eq!(raw.counters().await, in_progress);
}

/// Moves task `id`'s hash, queue entry and `qm` to the id `to` (any bytes), behind the store's
/// back.
async fn rename_task(raw: &mut Raw, id: &str, to: &[u8]) {
    let qm: Vec<u8> = raw
        .cmd(redis::cmd("HGET").arg(raw.task_key(id)).arg("qm"))
        .await;
    let mut moved = qm[..20].to_vec();
    moved.extend_from_slice(to);
    let mut to_key = raw.task_key("").into_bytes();
    to_key.extend_from_slice(to);
    let _: () = raw
        .cmd(redis::cmd("RENAME").arg(raw.task_key(id)).arg(&to_key))
        .await;
    let _: i64 = raw
        .cmd(redis::cmd("HSET").arg(&to_key).arg("qm").arg(&moved))
        .await;
    let queue = format!("{}r", raw.base);
    let _: i64 = raw.cmd(redis::cmd("ZREM").arg(&queue).arg(&qm)).await;
    let _: i64 = raw
        .cmd(redis::cmd("ZADD").arg(&queue).arg(0).arg(&moved))
        .await;
}
