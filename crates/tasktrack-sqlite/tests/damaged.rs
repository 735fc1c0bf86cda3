//! A task row damaged by hand (say, its `history` JSON edited into something that does not
//! parse) must not stop its job: every `claim_next` would otherwise read it at the head of the
//! claim index and fail with `Corrupt`. Claims set it aside and go on; `get` still names it; its
//! status and counts stay; repaired and retried, it is claimable again.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tasktrack_core::testkit::{Harness, damaged};
use tasktrack_core::{
    Claim, ClaimNext, Claimed, CreateMode, ErrorKind, JobName, NewTask, Retry, Status, Store,
    TaskId, TaskKey, Timestamp,
};
use tasktrack_sqlite::SqliteStore;

/// When the tests run.
const T: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn ids(claimed: &[Claimed]) -> Vec<String> {
    claimed.iter().map(|c| c.task.id.to_string()).collect()
}

/// Job `j` of tasks a, b and c, created at `T`, and a connection of its own to edit the file by
/// hand (the directory lives as long as the first value).
async fn three_tasks() -> (
    tempfile::TempDir,
    SqliteStore,
    JobName,
    rusqlite::Connection,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = tasktrack_sqlite::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let job = JobName::new("j").unwrap();
    let tasks: Vec<NewTask> = ["a", "b", "c"]
        .iter()
        .map(|id| NewTask::new(TaskId::new(*id).unwrap()))
        .collect();
    store
        .create(&job, &tasks, CreateMode::SkipExisting, T)
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    (dir, store, job, conn)
}

#[tokio::test]
async fn claims_set_a_damaged_row_aside_until_it_is_repaired_and_retried() {
    let (_dir, store, job, conn) = three_tasks().await;
    let set_history = |history: &str| {
        conn.execute(
            "UPDATE tasktrack_task SET history = ?1 WHERE job = 'j' AND id = 'a'",
            [history],
        )
        .unwrap()
    };
    set_history("{ damaged");

    let claim = ClaimNext::new("w", Duration::from_secs(30));
    let first = store.claim_next(&job, &claim, T).await.unwrap();
    assert_eq!(ids(&first), ["b"], "a, first in claim order, is set aside");
    let a = TaskKey::new(job.clone(), TaskId::new("a").unwrap());
    let err = store.get(&a).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("j/a"), "{err}");
    let second = store.claim_next(&job, &claim, T).await.unwrap();
    assert_eq!(ids(&second), ["c"]);
    assert!(store.claim_next(&job, &claim, T).await.unwrap().is_empty());
    let counts = store.counts(&job).await.unwrap().by_status;
    assert_eq!(
        (counts.pending, counts.in_progress),
        (1, 2),
        "a still counts"
    );

    // Repaired by hand, then retried through the store: claimable again.
    set_history("[]");
    store.retry(&a, &Retry::default(), T).await.unwrap();
    let again = store.claim_next(&job, &claim, T).await.unwrap();
    assert_eq!(ids(&again), ["a"]);
}

/// A row marked finished by hand (`status` set, `claimable_at` left as it was) must not block
/// the job: it stays at the head of the claim index, and a claim that only refused it would
/// answer `[]` while other tasks wait. Claims re-index it and go on.
#[tokio::test]
async fn a_row_finished_by_hand_does_not_block_claims() {
    let (_dir, store, job, conn) = three_tasks().await;
    conn.execute(
        "UPDATE tasktrack_task SET status = 'succeeded', status_code = 40 WHERE id = 'a'",
        [],
    )
    .unwrap();
    let claim = ClaimNext::new("w", Duration::from_secs(30));
    let mut order = Vec::new();
    for _ in 0..3 {
        order.extend(ids(&store.claim_next(&job, &claim, T).await.unwrap()));
    }
    assert_eq!(order, ["b", "c"]);
    let a = TaskKey::new(job.clone(), TaskId::new("a").unwrap());
    assert_eq!(store.get(&a).await.unwrap().status, Status::Succeeded);
}

/// In a batched completion only the damaged row's lease answers `Corrupt`: the others are
/// completed and committed (a damaged row used to roll the whole batch back).
#[tokio::test]
async fn a_damaged_row_fails_only_its_own_lease_in_a_batch() {
    let (_dir, store, job, conn) = three_tasks().await;
    let claim = ClaimNext::new("w", Duration::from_secs(30)).with_limit(3);
    let claimed = store.claim_next(&job, &claim, T).await.unwrap();
    assert_eq!(ids(&claimed), ["a", "b", "c"]);
    conn.execute(
        "UPDATE tasktrack_task SET history = '{ damaged' WHERE job = 'j' AND id = 'b'",
        [],
    )
    .unwrap();
    let done: Vec<_> = claimed
        .iter()
        .map(|c| (c.lease.clone(), serde_json::json!(c.task.id.as_str())))
        .collect();
    let answers = store.succeed_many(&done, T).await.unwrap();
    let kinds: Vec<Option<ErrorKind>> = answers
        .iter()
        .map(|a| a.as_ref().err().map(|e| e.kind()))
        .collect();
    assert_eq!(kinds, [None, Some(ErrorKind::Corrupt), None]);
    for id in ["a", "c"] {
        let key = TaskKey::new(job.clone(), TaskId::new(id).unwrap());
        assert_eq!(store.get(&key).await.unwrap().status, Status::Succeeded);
    }
}

/// A row whose token a claim cannot advance (edited by hand to SQLite's largest integer) is set
/// aside like a row that does not decode, instead of failing every claim of its job.
#[tokio::test]
async fn a_row_whose_token_cannot_advance_is_set_aside() {
    let (_dir, store, job, conn) = three_tasks().await;
    conn.execute(
        "UPDATE tasktrack_task SET token = 9223372036854775807 WHERE id = 'a'",
        [],
    )
    .unwrap();
    let claim = ClaimNext::new("w", Duration::from_secs(30)).with_limit(3);
    let won = store.claim_next(&job, &claim, T).await.unwrap();
    assert_eq!(ids(&won), ["b", "c"]);
    assert!(store.claim_next(&job, &claim, T).await.unwrap().is_empty());
    let a = TaskKey::new(job.clone(), TaskId::new("a").unwrap());
    assert_eq!(store.get(&a).await.unwrap().status, Status::Pending);
}

/// A priority edited by hand into text sorts above every number in SQLite. The claim walk,
/// which seeks priority by priority, meets it first: it scans from there in claim order, sets
/// the row aside and claims the others.
#[tokio::test]
async fn a_row_whose_priority_is_text_is_set_aside() {
    let (_dir, store, job, conn) = three_tasks().await;
    conn.execute(
        "UPDATE tasktrack_task SET priority = 'high' WHERE id = 'b'",
        [],
    )
    .unwrap();
    let claim = ClaimNext::new("w", Duration::from_secs(30));
    let mut order = Vec::new();
    for _ in 0..3 {
        order.extend(ids(&store.claim_next(&job, &claim, T).await.unwrap()));
    }
    assert_eq!(order, ["a", "c"]);
    let b = TaskKey::new(job.clone(), TaskId::new("b").unwrap());
    let err = store.get(&b).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("column priority"), "{err}");
}

/// An id edited by hand into bytes that are not UTF-8 is a damaged row: claims set it aside
/// (they used to fail with a `Backend` error on every call), and a list fails with `Corrupt`
/// naming the row and column, since no task id can stand for it.
#[tokio::test]
async fn a_row_whose_id_is_not_utf8_is_set_aside() {
    let (_dir, store, job, conn) = three_tasks().await;
    conn.execute(
        "UPDATE tasktrack_task SET id = CAST(X'61FF' AS TEXT) WHERE id = 'a'",
        [],
    )
    .unwrap();
    let claim = ClaimNext::new("w", Duration::from_secs(30)).with_limit(3);
    let won = store.claim_next(&job, &claim, T).await.unwrap();
    assert_eq!(ids(&won), ["b", "c"]);
    let aside: Option<i64> = conn
        .query_row(
            "SELECT claimable_at FROM tasktrack_task WHERE id = CAST(X'61FF' AS TEXT)",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(aside, None, "out of the claim index");
    let err = store
        .list(&tasktrack_core::TaskQuery::new(job.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("column id"), "{err}");
}

/// The same with a version one below the largest integer on a task whose lease expired: the
/// claim would bump it twice (the dead attempt, then the grant), so the row is set aside too,
/// instead of every claim of its job failing to write it.
#[tokio::test]
async fn an_expired_lease_whose_version_cannot_take_two_bumps_is_set_aside() {
    let (_dir, store, job, conn) = three_tasks().await;
    let a = TaskKey::new(job.clone(), TaskId::new("a").unwrap());
    let lease = Duration::from_secs(30);
    store.claim(&a, &Claim::new("w", lease), T).await.unwrap();
    conn.execute(
        "UPDATE tasktrack_task SET version = 9223372036854775806 WHERE id = 'a'",
        [],
    )
    .unwrap();
    let later = T.plus(lease).plus(Duration::from_secs(1));
    let claim = ClaimNext::new("w2", lease).with_limit(3);
    let won = store.claim_next(&job, &claim, later).await.unwrap();
    assert_eq!(ids(&won), ["b", "c"]);
}

/// `delete` removes a damaged row whatever its lease says (the shared case, with SQLite's hand:
/// invalid JSON written into the `data` column).
#[tokio::test]
async fn a_damaged_task_can_be_deleted() {
    let (_dir, harness, hand) = shared_case("a_damaged_task_can_be_deleted").await;
    damaged::a_damaged_task_can_be_deleted(harness, |key| damage_data(&hand, &key))
        .await
        .unwrap();
}

/// A list names a damaged row instead of failing (the shared case, with the same hand).
#[tokio::test]
async fn a_damaged_task_is_named_by_lists_not_hiding_the_others() {
    let (_dir, harness, hand) = shared_case("a_damaged_task_is_named_by_lists").await;
    damaged::a_damaged_task_is_named_by_lists_not_hiding_the_others(harness, |key| {
        damage_data(&hand, &key)
    })
    .await
    .unwrap();
}

/// A task whose status column is edited by hand into one nobody knows (the shared case): the
/// counters, moved by the store, still count it under the status the store last wrote; lists
/// name it; deleting it recounts the job, so the counts of the others stay exact.
#[tokio::test]
async fn a_task_whose_status_does_not_read_still_counts() {
    let (_dir, harness, hand) = shared_case("a_task_whose_status_does_not_read").await;
    let counted = damaged::StatusUnread::CountedAsLastWritten;
    let damage = |key: TaskKey| {
        let changed = hand
            .lock()
            .unwrap()
            .execute(
                "UPDATE tasktrack_task SET status = 'lost' WHERE job = ?1 AND id = ?2",
                [key.job.as_str(), key.id.as_str()],
            )
            .unwrap();
        assert_eq!(changed, 1, "{key} damaged");
        std::future::ready(())
    };
    damaged::a_task_whose_status_does_not_read_still_counts(harness, damage, counted)
        .await
        .unwrap();
}

/// `delete_job` deleting a row whose status was edited into one nobody knows, while another task
/// keeps the job under a live lease: the counts of what is left are exact (the delete trigger
/// had no counter to move for that row; the job is recounted).
#[tokio::test]
async fn delete_job_recounts_what_it_leaves() {
    let (_dir, store, job, conn) = three_tasks().await;
    let a = TaskKey::new(job.clone(), TaskId::new("a").unwrap());
    store
        .claim(&a, &Claim::new("w", Duration::from_secs(30)), T)
        .await
        .unwrap();
    conn.execute(
        "UPDATE tasktrack_task SET status = 'lost' WHERE id = 'b'",
        [],
    )
    .unwrap();
    let deleted = store.delete_job(&job, T).await.unwrap();
    assert_eq!((deleted.tasks, deleted.kept_leased), (2, 1), "{deleted:?}");
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(
        (
            counts.known,
            counts.by_status.in_progress,
            counts.by_status.pending
        ),
        (1, 1, 0),
        "{counts:?}"
    );
}

/// A store on a fresh file for shared case `case`, and a connection of its own to damage rows
/// with (the directory lives as long as the first value).
async fn shared_case(case: &str) -> (tempfile::TempDir, Harness, Mutex<rusqlite::Connection>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = tasktrack_sqlite::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let hand = Mutex::new(rusqlite::Connection::open(&path).unwrap());
    (dir, Harness::new(Arc::new(store), case, 1.0), hand)
}

/// The shared cases' hand: invalid JSON written into the task's `data` column.
fn damage_data(hand: &Mutex<rusqlite::Connection>, key: &TaskKey) -> std::future::Ready<()> {
    let changed = hand
        .lock()
        .unwrap()
        .execute(
            "UPDATE tasktrack_task SET data = '{ damaged' WHERE job = ?1 AND id = ?2",
            [key.job.as_str(), key.id.as_str()],
        )
        .unwrap();
    assert_eq!(changed, 1, "{key} damaged");
    std::future::ready(())
}
