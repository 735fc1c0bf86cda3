//! What a user gets for what goes wrong: a server that is down, a URL with bad options,
//! documents edited by hand into something that does not decode, and tasks too large for a
//! MongoDB document (16 MiB).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use mongodb::Collection;
use mongodb::bson::{Bson, Document, doc};
use serde_json::json;
use std::time::Duration;
use tasktrack_core::*;
use tasktrack_mongodb::MongoStore;

/// MongoDB's document size limit.
const LIMIT: usize = 16 * 1024 * 1024;

/// A fresh store and its raw tasks collection, or `None` when no server is set up.
async fn scratch() -> Option<(MongoStore, Collection<Document>)> {
    common::store().await?;
    let prefix = common::unique_prefix();
    let store = common::connect(&prefix).await.unwrap();
    // The test URL names no database: the default one.
    let raw = store
        .client()
        .database(tasktrack_mongodb::config::DEFAULT_DATABASE)
        .collection(&format!("{prefix}tasks"));
    Some((store, raw))
}

fn key(job: &str, id: &str) -> TaskKey {
    TaskKey::new(JobName::new(job).unwrap(), TaskId::new(id).unwrap())
}

fn raw_id(job: &str, id: &str) -> String {
    format!("{job}\u{1f}{id}")
}

async fn raw_doc(raw: &Collection<Document>, job: &str, id: &str) -> Document {
    raw.find_one(doc! {"_id": raw_id(job, id)})
        .await
        .unwrap()
        .unwrap()
}

async fn raw_set(raw: &Collection<Document>, job: &str, id: &str, update: Document) {
    let r = raw
        .update_one(doc! {"_id": raw_id(job, id)}, update)
        .await
        .unwrap();
    assert_eq!(r.matched_count, 1);
}

fn size(doc: &Document) -> usize {
    let mut bytes = Vec::new();
    doc.to_writer(&mut bytes).unwrap();
    bytes.len()
}

fn ids(claimed: &[Claimed]) -> Vec<&str> {
    claimed.iter().map(|c| c.task.id.as_str()).collect()
}

async fn create_by_priority(store: &MongoStore, job: &JobName, ids: &[&str], now: Timestamp) {
    let n = ids.len() as i32;
    let news: Vec<NewTask> = ids
        .iter()
        .zip(0..)
        .map(|(id, i)| NewTask::new(TaskId::new(*id).unwrap()).with_priority(n - i))
        .collect();
    store
        .create(job, &news, CreateMode::SkipExisting, now)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_in_one_line_naming_host_and_port() {
    // Port 1 on loopback: refused at once. The short timeout keeps the test short; the default
    // one is pinned by the unit test `timeouts_are_short_unless_the_url_sets_them`.
    let store = tasktrack_mongodb::open("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300")
        .await
        .unwrap();
    let err = store.init().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains('\n'), "{text}");
}

#[tokio::test]
async fn a_url_with_bad_options_is_invalid_input_without_the_password() {
    for (url, names) in [
        (
            "mongodb://u:secret@h/?serverSelectionTimeoutMS=soon",
            "serverSelectionTimeoutMS",
        ),
        ("mongodb://u:secret@h/?replicaSett=rs0", "replicaSett"),
        ("mongodb://u:secret@h/?tls=maybe", "tls"),
    ] {
        let err = tasktrack_mongodb::open(url).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::InvalidInput(_)), "{url}: {err:?}");
        assert!(text.contains(names), "{url}: {text}");
        assert!(!text.contains("secret"), "{url}: {text}");
    }
}

/// Six tasks by priority, three of them edited by hand into documents that do not decode: one
/// `claim_next(3)` grants exactly the three healthy ones; the damaged ones are set aside (out
/// of the claim path, nothing else changed), `get` names them as `Corrupt`, and a repaired one
/// comes back with `retry`.
#[tokio::test]
async fn claim_next_sets_unreadable_tasks_aside_and_grants_the_healthy_ones() {
    let Some((store, raw)) = scratch().await else {
        return;
    };
    let job = JobName::new("heads").unwrap();
    let now = Timestamp::from_millis(10_000);
    create_by_priority(&store, &job, &["a", "b", "c", "d", "e", "f"], now).await;
    raw_set(&raw, "heads", "a", doc! {"$set": {"status": 7}}).await;
    raw_set(&raw, "heads", "c", doc! {"$set": {"attempts": "many"}}).await;
    raw_set(&raw, "heads", "e", doc! {"$unset": {"token": ""}}).await;

    let req = ClaimNext::new("w", Duration::from_secs(60)).with_limit(3);
    let claimed = store.claim_next(&job, &req, now).await.unwrap();
    assert_eq!(ids(&claimed), ["b", "d", "f"]);
    for id in ["a", "c", "e"] {
        match store.get(&key("heads", id)).await {
            Err(Error::Corrupt { location, .. }) => {
                assert!(location.contains(&format!("task heads/{id}")), "{location}")
            }
            other => panic!("{id}: expected Corrupt, got {other:?}"),
        }
        let d = raw_doc(&raw, "heads", id).await;
        assert!(!d.contains_key("claim_at"), "{id} still claimable: {d}");
        assert!(d.get_str("set_aside").is_ok(), "{d}");
        assert_eq!(d.get_i64("version").unwrap(), 1, "{id} was written");
    }
    // Nothing left to claim, and no error: the damaged tasks do not come back.
    assert!(store.claim_next(&job, &req, now).await.unwrap().is_empty());

    // Repaired by hand, then `retry`: claimable again, without the marker.
    raw_set(&raw, "heads", "c", doc! {"$set": {"attempts": 0_i64}}).await;
    store
        .retry(&key("heads", "c"), &Retry::default(), now)
        .await
        .unwrap();
    assert!(!raw_doc(&raw, "heads", "c").await.contains_key("set_aside"));
    let claimed = store.claim_next(&job, &req, now).await.unwrap();
    assert_eq!(ids(&claimed), ["c"]);
}

/// A task whose token (or version) was edited to the largest BSON integer decodes, but a claim
/// cannot bump it: it is set aside like an unreadable one, and the claim goes on to the next.
#[tokio::test]
async fn a_task_whose_token_cannot_advance_is_set_aside() {
    let Some((store, raw)) = scratch().await else {
        return;
    };
    let job = JobName::new("top").unwrap();
    let now = Timestamp::from_millis(10_000);
    create_by_priority(&store, &job, &["a", "b", "c"], now).await;
    raw_set(&raw, "top", "a", doc! {"$set": {"token": i64::MAX}}).await;
    raw_set(&raw, "top", "b", doc! {"$set": {"version": i64::MAX}}).await;
    let req = ClaimNext::new("w", Duration::from_secs(60));
    let claimed = store.claim_next(&job, &req, now).await.unwrap();
    assert_eq!(ids(&claimed), ["c"]);
    for id in ["a", "b"] {
        let d = raw_doc(&raw, "top", id).await;
        assert!(d.get_str("set_aside").is_ok(), "{id} not set aside: {d}");
    }
    assert!(store.claim_next(&job, &req, now).await.unwrap().is_empty());
}

/// More damaged tasks at the head of the queue than a claim reads at once (4 per task asked):
/// the claim still reaches the healthy task behind them.
#[tokio::test]
async fn many_unreadable_heads_do_not_hide_the_queue() {
    let Some((store, raw)) = scratch().await else {
        return;
    };
    let job = JobName::new("wall").unwrap();
    let now = Timestamp::from_millis(10_000);
    let names: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    create_by_priority(&store, &job, &refs, now).await;
    for id in &refs[..9] {
        raw_set(&raw, "wall", id, doc! {"$set": {"history": "lost"}}).await;
    }
    let req = ClaimNext::new("w", Duration::from_secs(60));
    let claimed = store.claim_next(&job, &req, now).await.unwrap();
    assert_eq!(ids(&claimed), ["t9"]);
}

/// `delete` removes a damaged task whatever its lease says (the shared case), each damaged as
/// above by a field that no longer decodes (its status left readable): the one a worker holds,
/// and a pending one that the case's claim sets aside. Then no document of either is left.
#[tokio::test]
async fn a_damaged_task_can_be_deleted() {
    let Some((h, raw)) = damaged_case("a_damaged_task_can_be_deleted").await else {
        return;
    };
    let job = h.job.clone();
    let update = doc! {"$set": {"attempts": "many"}};
    let damage = |key| damage_doc(raw.clone(), update.clone(), key);
    testkit::damaged::a_damaged_task_can_be_deleted(h, damage)
        .await
        .unwrap();
    assert_eq!(
        documents_of(&raw, &job).await,
        2,
        "`other` and the new `held`"
    );
}

/// A list goes past a damaged task and names it in the page (the shared case), damaged as
/// above: its raw `updated_at` and `id` still read, so it is placed by them and named once in
/// each walk; `delete_job` then removes it with the others, leaving no document of the job.
#[tokio::test]
async fn a_damaged_task_is_named_by_lists_not_hiding_the_others() {
    lists_name_tasks_damaged_by(doc! {"$set": {"attempts": "many"}}).await;
}

/// The same with the task's `updated_at` edited into text that is no time: nothing places it
/// in the listing order, but the server sorts and filters it as that text, so it is named on
/// the one page of each walk whose range holds it.
#[tokio::test]
async fn a_task_whose_updated_at_is_no_time_is_named_once_by_lists() {
    lists_name_tasks_damaged_by(doc! {"$set": {"updated_at": "yesterday"}}).await;
}

/// Runs the shared listing case with `update` applied by hand as its damage, then checks that
/// `delete_job` left no document of the job.
async fn lists_name_tasks_damaged_by(update: Document) {
    let Some((h, raw)) = damaged_case("a_damaged_task_is_named_by_lists").await else {
        return;
    };
    let job = h.job.clone();
    testkit::damaged::a_damaged_task_is_named_by_lists_not_hiding_the_others(h, |key| {
        damage_doc(raw.clone(), update.clone(), key)
    })
    .await
    .unwrap();
    assert_eq!(documents_of(&raw, &job).await, 0);
}

/// A task whose `status` is edited by hand into one nobody knows is counted as unreadable (counts
/// group what the documents hold), named by lists and deletable (the shared case).
#[tokio::test]
async fn a_task_whose_status_does_not_read_still_counts() {
    let Some((h, raw)) = damaged_case("a_task_whose_status_does_not_read").await else {
        return;
    };
    let update = doc! {"$set": {"status": "lost"}};
    let damage = |key| damage_doc(raw.clone(), update.clone(), key);
    let counted = testkit::damaged::StatusUnread::CountedAsUnreadable;
    testkit::damaged::a_task_whose_status_does_not_read_still_counts(h, damage, counted)
        .await
        .unwrap();
}

/// A scratch store for shared damaged-record case `case`, and its raw task collection.
async fn damaged_case(case: &str) -> Option<(testkit::Harness, Collection<Document>)> {
    let (store, raw) = scratch().await?;
    Some((
        testkit::Harness::new(std::sync::Arc::new(store), case, 1.0),
        raw,
    ))
}

/// The shared cases' hand: `update` applied by hand to task `key`'s document.
async fn damage_doc(raw: Collection<Document>, update: Document, key: TaskKey) {
    raw_set(&raw, key.job.as_str(), key.id.as_str(), update).await
}

/// How many task documents of `job` the collection holds.
async fn documents_of(raw: &Collection<Document>, job: &JobName) -> u64 {
    raw.count_documents(doc! {"job": job.as_str()})
        .await
        .unwrap()
}

/// A create with one task too large for a document is refused naming it, and writes nothing
/// (not even the tasks before it); a success whose output is too large is refused naming the
/// task, which stays in progress under its lease.
#[tokio::test]
async fn a_task_too_large_is_invalid_input_naming_it_and_nothing_is_written() {
    let Some((store, _raw)) = scratch().await else {
        return;
    };
    let job = JobName::new("big").unwrap();
    let now = Timestamp::from_millis(10_000);
    let huge = "x".repeat(LIMIT);
    let mut news: Vec<NewTask> = (0..600)
        .map(|i| NewTask::new(TaskId::new(format!("small{i:03}")).unwrap()))
        .collect();
    news.push(NewTask::new(TaskId::new("huge").unwrap()).with_data(json!({ "pad": huge })));
    match store
        .create(&job, &news, CreateMode::SkipExisting, now)
        .await
    {
        Err(Error::InvalidInput(m)) => assert!(m.contains("big/huge"), "{m}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(counts.known, 0, "{counts:?}");

    store
        .create(&job, &news[..1], CreateMode::SkipExisting, now)
        .await
        .unwrap();
    let req = ClaimNext::new("w", Duration::from_secs(60));
    let claimed = store.claim_next(&job, &req, now).await.unwrap();
    let lease = claimed[0].lease.clone();
    match store.succeed(&lease, json!({ "out": huge }), now).await {
        Err(Error::InvalidInput(m)) => assert!(m.contains("big/small000"), "{m}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    match store
        .succeed_many(&[(lease.clone(), json!({ "out": huge }))], now)
        .await
        .unwrap()
        .pop()
    {
        Some(Err(Error::InvalidInput(m))) => assert!(m.contains("big/small000"), "{m}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let task = store.get(&lease.key).await.unwrap();
    assert_eq!(task.status, Status::InProgress);
    store.succeed(&lease, json!("small"), now).await.unwrap();
}

/// Tasks whose documents were made nearly 16 MiB behind the store's back, so that a lease no
/// longer fits: the claim exhausts one (kind `unrecordable`, its large last error dropped to
/// make room) and sets the other aside (its data alone fills it); `claim_next` goes on to the
/// healthy task behind them instead of failing.
#[tokio::test]
async fn a_claim_that_cannot_fit_does_not_block_the_queue() {
    let Some((store, raw)) = scratch().await else {
        return;
    };
    let job = JobName::new("full").unwrap();
    let now = Timestamp::from_millis(10_000);
    create_by_priority(&store, &job, &["failed", "fresh", "ok"], now).await;
    // `failed`: one attempt failed with a 200 KB traceback (in its error and its history).
    let claimed = store
        .claim(
            &key("full", "failed"),
            &Claim::new("w", Duration::from_secs(60)),
            now,
        )
        .await
        .unwrap();
    let mut failure = Failure::new("exit", "boom");
    failure.detail = Some("t".repeat(200_000));
    let fail = Fail {
        error: failure,
        retryable: true,
        backoff: Backoff::NONE,
    };
    store.fail(&claimed.lease, &fail, now).await.unwrap();
    // Both padded by hand to 10 bytes under the limit.
    for id in ["failed", "fresh"] {
        raw_set(&raw, "full", id, doc! {"$set": {"data": {"pad": ""}}}).await;
        let pad = LIMIT - 10 - size(&raw_doc(&raw, "full", id).await);
        let update = doc! {"$set": {"data": {"pad": Bson::String("p".repeat(pad))}}};
        raw_set(&raw, "full", id, update).await;
        assert_eq!(size(&raw_doc(&raw, "full", id).await), LIMIT - 10);
    }

    // A limit of 3, so that every candidate is tried whatever the order.
    let req = ClaimNext::new("w2", Duration::from_secs(60)).with_limit(3);
    let claimed = store.claim_next(&job, &req, now).await.unwrap();
    assert_eq!(ids(&claimed), ["ok"]);
    let failed = store.get(&key("full", "failed")).await.unwrap();
    assert_eq!(failed.status, Status::Exhausted);
    let error = failed.error.unwrap();
    assert_eq!(error.kind, "unrecordable");
    assert!(error.message.contains("full/failed"), "{}", error.message);
    let fresh = raw_doc(&raw, "full", "fresh").await;
    let mut shown = fresh.clone();
    shown.remove("data");
    assert!(!fresh.contains_key("claim_at"), "still claimable: {shown}");
    // No room for the `set_aside` marker in a document 10 bytes under the limit.
    assert!(
        !fresh.contains_key("set_aside"),
        "{:?}",
        fresh.get("set_aside")
    );
    assert_eq!(
        store.get(&key("full", "fresh")).await.unwrap().status,
        Status::Pending
    );
    assert!(store.claim_next(&job, &req, now).await.unwrap().is_empty());
}
