//! Cases about damaged task records, for the backends that store an encoded form.
//!
//! A record that no longer decodes (edited by hand, truncated, written by another tool) is
//! [`Error::Corrupt`] wherever it is read, and claims go past it (DESIGN.md, "A damaged task
//! record does not stop its job"). These cases need a hand that can damage a stored record,
//! which only the backend's own tests have, and the memory store holds no encoded form; so they
//! are not in [`conformance_tests!`](crate::conformance_tests). A backend's test calls each with a
//! [`Harness`] and a `damage` function that makes the stored record of a task undecodable the way
//! a hand edit would (for example invalid JSON in its data), leaving its status readable where
//! the backend stores the status apart.

use super::{Harness, LEASE, assert_stale, ids};
use crate::error::{Error, Result};
use crate::model::{TaskKey, TaskQuery};
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
