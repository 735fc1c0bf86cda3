//! Two deletes of one task: exactly one succeeds, the other is told the task is gone
//! (`NotFound`, as on every other backend). A delete whose transaction finds the item already
//! gone must not take that for its own earlier attempt landing: the SDK's retries of a
//! transaction carry its idempotency token, so DynamoDB itself answers those.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use tasktrack_core::cas::Documents;
use tasktrack_core::{CreateMode, Error, JobName, Store};

/// Two copies of a task read before either delete: the first delete wins, the second finds the
/// item gone and answers "changed" (`false`), not "deleted".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_from_a_copy_read_before_another_delete_is_refused() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let job = JobName::new("j").unwrap();
    store
        .create(
            &job,
            &common::new_tasks(&["a"]),
            CreateMode::SkipExisting,
            common::now(),
        )
        .await
        .unwrap();
    let docs = store.documents();
    let key = common::key(&job, "a");
    let first = docs.get_task(&key).await.unwrap().unwrap();
    let second = docs.get_task(&key).await.unwrap().unwrap();
    assert!(docs.delete_task(&first).await.unwrap(), "the first delete");
    assert!(
        !docs.delete_task(&second).await.unwrap(),
        "a delete of a task another delete removed answered 'deleted'"
    );
}

/// Two stores (as two processes) delete the same task at once, round after round: exactly one
/// answers `Ok`, the other `NotFound`; the task's count is taken once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_deletes_of_one_task_exactly_one_succeeds() {
    const ROUNDS: usize = 20;
    let Some(url) = common::fresh_url_or_skip("&counter_shards=1") else {
        return;
    };
    let one = common::open_temporary(&url).await.unwrap();
    let other = tasktrack_dynamodb::open(&url).await.unwrap();
    let job = JobName::new("j").unwrap();
    for round in 0..ROUNDS {
        let id = format!("r{round}");
        one.create(
            &job,
            &common::new_tasks(&[&id]),
            CreateMode::SkipExisting,
            common::now(),
        )
        .await
        .unwrap();
        let key = common::key(&job, &id);
        let (a, b) = tokio::join!(
            one.delete(&key, common::now()),
            other.delete(&key, common::now())
        );
        let oks = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            oks, 1,
            "round {round}: exactly one delete succeeds: {a:?} {b:?}"
        );
        let loser = if a.is_ok() { b } else { a };
        assert!(
            matches!(loser, Err(Error::NotFound(_))),
            "round {round}: the other delete answers NotFound: {loser:?}"
        );
    }
    let counts = one.counts(&job).await.unwrap();
    assert_eq!(counts.known, 0, "each task counted out once: {counts:?}");
}
