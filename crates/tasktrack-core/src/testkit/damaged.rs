//! Cases about damaged task records, for the backends that store an encoded form.
//!
//! A record that no longer decodes (edited by hand, truncated, written by another tool) is
//! [`Error::Corrupt`] wherever it is read, and claims go past it (DESIGN.md, "A damaged task
//! record does not stop its job"). These cases need a hand that can damage a stored record,
//! which only the backend's own tests have, and the memory store holds no encoded form; so they
//! are not in [`conformance_tests!`](crate::conformance_tests). A backend's test calls each with a
//! [`Harness`] and a `damage` function that makes the stored record of a task undecodable the way
//! a hand edit would: for the first two cases, for example invalid JSON in its data, leaving its
//! status readable where the backend stores the status apart; for
//! [`a_task_whose_status_does_not_read_still_counts`], that stored status itself.

use super::{Harness, LEASE, assert_stale, ids};
use crate::error::{Error, Result};
use crate::model::{Status, TaskKey, TaskQuery, UnreadableTask};
use crate::store::Claim;
use serde_json::json;
use std::future::Future;

/// `delete` removes a damaged task whatever its lease says, and leaves the job whole: the
/// damaged record is the only way a job can hold something no command could otherwise remove.
///
/// Three tasks: `held` is damaged while a worker holds its lease, `idle` while pending (and a
/// claim then walks past it, setting it aside), `other` stays healthy. Deleting the two damaged
/// ones makes them `NotFound`, fences the old holder out, and leaves counts, lists and claims
/// answering for `other` alone.
pub async fn a_damaged_task_can_be_deleted<F, Fut>(h: Harness, damage: F) -> Result<()>
where
    F: Fn(TaskKey) -> Fut,
    Fut: Future<Output = ()>,
{
    h.add(&["held", "idle", "other"]).await?;
    let held = h.claim("held", "w").await?.lease;
    damage(h.key("held")).await;
    damage(h.key("idle")).await;
    let counts = h.store.counts(&h.job).await?;
    assert_eq!(
        (counts.known, counts.by_status.in_progress),
        (3, 1),
        "damaged tasks still count: {counts:?}"
    );
    let granted = h.claim_next("w", 10).await?;
    assert_eq!(
        granted
            .iter()
            .map(|c| c.task.id.as_str())
            .collect::<Vec<_>>(),
        ["other"],
        "a claim goes past damaged records"
    );
    for id in ["held", "idle"] {
        let read = h.get(id).await;
        assert!(
            matches!(read, Err(Error::Corrupt { .. })),
            "{id}: a damaged record reads as Corrupt, got {read:?}"
        );
        h.store.delete(&h.key(id), h.now()).await?;
        let read = h.get(id).await;
        assert!(
            matches!(read, Err(Error::NotFound(_))),
            "{id}: deleted, got {read:?}"
        );
        let again = h.store.delete(&h.key(id), h.now()).await;
        assert!(
            matches!(again, Err(Error::NotFound(_))),
            "{id}: deleting twice is NotFound, got {again:?}"
        );
    }
    assert_stale(h.store.succeed(&held, json!(null), h.now()).await);

    let counts = h.store.counts(&h.job).await?;
    assert_eq!(counts.known, 1, "counts after the deletes: {counts:?}");
    assert_eq!(counts.by_status.in_progress, 1, "{counts:?}");
    let page = h.store.list(&TaskQuery::new(h.job.clone())).await?;
    assert_eq!(ids(&page), ["other"]);

    // The ids are free again: a new task under a deleted id is an ordinary task.
    h.add(&["held"]).await?;
    let fresh = h
        .store
        .claim(&h.key("held"), &Claim::new("w2", LEASE), h.now())
        .await?;
    h.store.succeed(&fresh.lease, json!("ok"), h.now()).await?;
    let counts = h.store.counts(&h.job).await?;
    assert_eq!(
        (counts.known, counts.by_status.succeeded),
        (2, 1),
        "{counts:?}"
    );
    Ok(())
}

/// A list goes past a damaged task and names it in [`TaskPage::unreadable`](crate::TaskPage),
/// instead of failing and hiding the rest of its job; and `delete_job` removes it with the job.
///
/// Five pending tasks `a`, `b`, `c3po`, `d`, `e`, `c3po` damaged. Walked two at a time, in both orders and with a
/// status filter that matches it, the pages hold the four healthy tasks in order and name `c3po`
/// once, with an error that names it; the counts still count it; `delete_job` removes all five
/// and the job record.
pub async fn a_damaged_task_is_named_by_lists_not_hiding_the_others<F, Fut>(
    h: Harness,
    damage: F,
) -> Result<()>
where
    F: Fn(TaskKey) -> Fut,
    Fut: Future<Output = ()>,
{
    h.add(&["a", "b", "c3po", "d", "e"]).await?;
    damage(h.key("c3po")).await;

    let all = TaskQuery::new(h.job.clone()).with_limit(2);
    let pending = all.clone().with_statuses([Status::Pending]);
    let mut newest_first = all.clone();
    newest_first.newest_first = true;
    for (query, order) in [
        (all, ["a", "b", "d", "e"]),
        (pending, ["a", "b", "d", "e"]),
        (newest_first, ["e", "d", "b", "a"]),
    ] {
        let (tasks, unreadable) = walk(&h, query.clone()).await?;
        assert_eq!(tasks, order, "{query:?}");
        let named: Vec<&str> = unreadable.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(named, ["c3po"], "{query:?}: the damaged task is named once");
        assert!(
            unreadable[0].error.contains("c3po"),
            "the error names where the record lives: {:?}",
            unreadable[0].error
        );
    }
    assert_eq!(h.store.counts(&h.job).await?.by_status.pending, 5);

    let deleted = h.store.delete_job(&h.job, h.now()).await?;
    assert_eq!(
        (deleted.tasks, deleted.job_removed),
        (5, true),
        "{deleted:?}"
    );
    let read = h.get("c3po").await;
    assert!(matches!(read, Err(Error::NotFound(_))), "{read:?}");
    assert_eq!(h.store.counts(&h.job).await?.known, 0);
    Ok(())
}

/// A task whose stored status itself no longer reads (edited by hand into one nobody knows)
/// does not stop its job's counts: they answer and count it in `known`. A store that counts what
/// its records hold reports it as [`Counts::unreadable`](crate::Counts::unreadable), under no status; one that keeps
/// counters of its own counts it under the status it last wrote. Either way a list
/// names it, a claim goes past it, and deleting it leaves the counts of the others exact.
///
/// Three tasks: `done` succeeded, `waiting` pending, `odd` pending until `damage` makes its
/// stored status unreadable; `counted` says which of the two ways the backend counts it.
pub async fn a_task_whose_status_does_not_read_still_counts<F, Fut>(
    h: Harness,
    damage: F,
    counted: StatusUnread,
) -> Result<()>
where
    F: Fn(TaskKey) -> Fut,
    Fut: Future<Output = ()>,
{
    h.add(&["done", "waiting", "odd"]).await?;
    let done = h.claim("done", "w").await?.lease;
    h.store.succeed(&done, json!(null), h.now()).await?;
    damage(h.key("odd")).await;

    let counts = h.store.counts(&h.job).await?;
    assert_eq!(
        (counts.known, counts.by_status.succeeded),
        (3, 1),
        "{counts:?}"
    );
    let (pending, unreadable) = match counted {
        StatusUnread::CountedAsUnreadable => (1, 1),
        StatusUnread::CountedAsLastWritten => (2, 0),
    };
    assert_eq!(
        (counts.by_status.pending, counts.unreadable),
        (pending, unreadable),
        "{counted:?}: {counts:?}"
    );
    assert!(!counts.all_terminal(), "{counts:?}");
    let (mut tasks, unreadable) = walk(&h, TaskQuery::new(h.job.clone())).await?;
    tasks.sort();
    assert_eq!(tasks, ["done", "waiting"]);
    let named: Vec<&str> = unreadable.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(named, ["odd"], "the list names it");
    let granted = h.claim_next("w", 10).await?;
    let granted: Vec<&str> = granted.iter().map(|c| c.task.id.as_str()).collect();
    assert_eq!(granted, ["waiting"], "a claim goes past it");

    h.store.delete(&h.key("odd"), h.now()).await?;
    let counts = h.store.counts(&h.job).await?;
    let by_status = &counts.by_status;
    assert_eq!(
        (
            counts.known,
            counts.unreadable,
            by_status.in_progress,
            by_status.succeeded
        ),
        (2, 0, 1, 1),
        "{counts:?}"
    );
    assert_eq!(by_status.total(), 2, "{counts:?}");
    Ok(())
}

/// How a backend counts a task whose stored status does not read
/// ([`a_task_whose_status_does_not_read_still_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusUnread {
    /// It counts what its records hold (a recount, or triggers that count whatever the status
    /// column says): the task is in [`Counts::unreadable`](crate::Counts::unreadable).
    CountedAsUnreadable,
    /// It moves counters of its own on every write: the task stays counted under the status
    /// the store last wrote.
    CountedAsLastWritten,
}

/// Every page of `query`: the ids of the tasks, in order, and the unreadable records named.
async fn walk(h: &Harness, mut query: TaskQuery) -> Result<(Vec<String>, Vec<UnreadableTask>)> {
    let (mut tasks, mut unreadable) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let page = h.store.list(&query).await?;
        assert!(page.tasks.len() <= query.limit, "{page:?}");
        tasks.extend(page.tasks.iter().map(|t| t.id.to_string()));
        unreadable.extend(page.unreadable);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok((tasks, unreadable)),
        }
    }
    panic!("{query:?}: the pages never end");
}
