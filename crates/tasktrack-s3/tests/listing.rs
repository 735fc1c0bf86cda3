//! Listing while the index lags: another process's claims reach the index only with its next
//! flush, so the index names tasks as `pending` that are `in_progress` by now. Paging with the
//! cursors must still visit every task that matches, with full pages until the real end.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use std::collections::HashSet;
use std::time::Duration;
use tasktrack_core::{
    ClaimNext, CreateMode, JobName, NewTask, Status, Store, TaskId, TaskQuery, Timestamp,
};
use tasktrack_s3::S3Store;

const TASKS: usize = 30;

/// Pages through `query` with its cursors; returns the ids seen, page by page.
async fn pages(store: &S3Store, mut query: TaskQuery) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    loop {
        let page = store.list(&query).await.unwrap();
        pages.push(page.tasks.iter().map(|t| t.id.to_string()).collect());
        match page.next {
            Some(next) => query.after = Some(next),
            None => return pages,
        }
        assert!(pages.len() <= TASKS + 1, "the cursor does not advance");
    }
}

/// Every page but the last has exactly `limit` tasks, and the last is not empty unless it is
/// the only one (a page is cut short only at the real end).
fn assert_full_pages(pages: &[Vec<String>], limit: usize, what: &str) {
    let (last, full) = pages.split_last().unwrap();
    for (i, page) in full.iter().enumerate() {
        assert_eq!(page.len(), limit, "{what}: page {i} is short: {pages:?}");
    }
    assert!(last.len() <= limit, "{what}: last page too long: {pages:?}");
    assert!(
        !last.is_empty() || pages.len() == 1,
        "{what}: an empty page after a full one: {pages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_visit_every_matching_task_while_the_index_lags() {
    let Some(store) = common::fresh("stale-list").await else {
        return;
    };
    // A second store on the same bucket and prefix: another process (own cache, own queue of
    // index updates).
    let other = common::open(store.url()).await.unwrap();
    let job = JobName::new("lagging").unwrap();
    let ids: Vec<String> = (0..TASKS).map(|i| format!("t{i:02}")).collect();
    // Two of every three tasks get a higher priority, so that the other process's claims are
    // spread over the listing order (updated_at, then id) instead of taking its head.
    let created = Timestamp::now();
    for (i, id) in ids.iter().enumerate() {
        let mut task = NewTask::new(TaskId::new(id.clone()).unwrap());
        task.priority = i32::from(i % 3 != 0);
        store
            .create(
                &job,
                &[task],
                CreateMode::SkipExisting,
                created.plus(Duration::from_millis(i as u64)),
            )
            .await
            .unwrap();
    }
    let claimed_at = created.plus(Duration::from_secs(60));
    let spread: usize = (0..TASKS).filter(|i| i % 3 != 0).count();
    let req = ClaimNext {
        limit: spread,
        ..ClaimNext::new("other-process", Duration::from_secs(600))
    };
    let claims = other.claim_next(&job, &req, claimed_at).await.unwrap();
    let claimed: HashSet<String> = claims.iter().map(|c| c.task.id.to_string()).collect();
    assert_eq!(claimed.len(), spread);
    assert!(
        claimed
            .iter()
            .all(|id| id[1..].parse::<usize>().unwrap() % 3 != 0),
        "{claimed:?}"
    );
    let pending: Vec<String> = ids
        .iter()
        .filter(|id| !claimed.contains(*id))
        .cloned()
        .collect();
    // The premise: the other process's claims are not in the index yet, so the index still
    // counts every task as pending.
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(counts.by_status.pending, TASKS as u64, "{counts:?}");
    assert_eq!(counts.by_status.in_progress, 0, "{counts:?}");

    for newest_first in [false, true] {
        // `list --status pending` (also `retry --failed`, purge): the claimed tasks drop out,
        // every pending one is visited once, pages are full until the last.
        for limit in [1, 3, 4] {
            let query = TaskQuery {
                newest_first,
                ..TaskQuery::new(job.clone())
                    .with_statuses([Status::Pending])
                    .with_limit(limit)
            };
            let what = format!("pending, limit {limit}, newest_first {newest_first}");
            let got = pages(&store, query).await;
            assert_full_pages(&got, limit, &what);
            let seen: Vec<String> = got.concat();
            let mut want = pending.clone();
            if newest_first {
                want.reverse();
            }
            assert_eq!(seen, want, "{what}");
        }
        // Every task (export): a claimed task's document has a newer `updated_at` than its
        // index entry; it must not push the cursor past the tasks listed after it.
        let query = TaskQuery {
            newest_first,
            ..TaskQuery::new(job.clone()).with_limit(4)
        };
        let what = format!("all, newest_first {newest_first}");
        let got = pages(&store, query).await;
        assert_full_pages(&got, 4, &what);
        let seen: Vec<String> = got.concat();
        assert_eq!(seen.len(), TASKS, "{what}: {got:?}");
        assert_eq!(
            seen.iter().cloned().collect::<HashSet<_>>(),
            ids.iter().cloned().collect::<HashSet<_>>(),
            "{what}"
        );
    }

    // Once the other process's claims reach the index, a page costs the index and `limit + 1`
    // task reads again, and lists the same.
    for c in &claims {
        other
            .succeed(&c.lease, serde_json::json!(null), claimed_at)
            .await
            .unwrap();
    }
    let query = TaskQuery::new(job.clone())
        .with_statuses([Status::Pending])
        .with_limit(3);
    let before = store.requests();
    store.list(&query).await.unwrap();
    let cost = store.requests().since(&before);
    assert_eq!(
        (cost.get_index, cost.get - cost.get_index),
        (8, 4),
        "{cost:?}"
    );
    assert_eq!(pages(&store, query).await.concat(), pending);
}
