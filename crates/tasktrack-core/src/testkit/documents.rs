//! Cases for a [`Documents`] backend itself, below the [`Store`](crate::Store) the adapter makes
//! of it: rules of its conditional writes that no sequence of store operations can reach
//! reliably. A backend calls each from one of its own tests, with its documents.

use crate::cas::{self, Documents, Versioned};
use crate::error::{Error, Result};
use crate::lifecycle;
use crate::model::{JobName, NewTask, Task, TaskKey};
use crate::time::{Clock, ManualClock, Timestamp};
use serde_json::json;
use std::time::Duration;

/// A job name no other call (of this process or another run) uses, so that cases can share a
/// server.
fn unique_job(case: &str) -> Result<JobName> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    JobName::new(format!(
        "{case}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000
    ))
}

/// The task at `key` as stored, or an error saying it is missing.
async fn stored<D: Documents + ?Sized>(docs: &D, key: &TaskKey) -> Result<Versioned<Task>> {
    docs.get_task(key)
        .await?
        .ok_or_else(|| Error::backend(format!("task {key} is missing")))
}

/// A task deleted and created again under its id starts again at version 1, so the revision of
/// a copy read before the delete must still not match the new task: a conditional replace or
/// delete made from it answers `false` and leaves the new task as it was (see
/// [`cas::task_revision`]). Otherwise a late writer would put the deleted record back over the
/// new one, or a stale lease holder overwrite the new holder's lease.
pub async fn a_copy_read_before_a_delete_does_not_match_the_re_created_task<D>(
    docs: &D,
) -> Result<()>
where
    D: Documents + ?Sized,
{
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let job = cas::ensure_job(docs, &unique_job("recreated")?, clock.now()).await?;
    let new = |data| NewTask::new(crate::testkit::tid("a")).with_data(json!(data));
    let first = lifecycle::create_task(&job, &new("first"), clock.now())?;
    assert!(
        docs.insert_task(&first).await?,
        "the first task is inserted"
    );
    let key = first.key();
    let old = stored(docs, &key).await?;

    clock.advance(Duration::from_secs(1));
    assert!(docs.delete_task(&old).await?, "the first task is deleted");
    let second = lifecycle::create_task(&job, &new("second"), clock.now())?;
    assert_eq!(second.version, old.value.version, "versions start afresh");
    assert!(
        docs.insert_task(&second).await?,
        "the second task is inserted"
    );
    let current = stored(docs, &key).await?;
    assert_eq!(current.value, second);

    // What a late writer holding the old copy would write: its rule applied to the old record.
    clock.advance(Duration::from_secs(1));
    let mut late = late_of(&old.value, clock.now());
    late.data = json!("written from the deleted task");
    assert!(
        !docs.replace_task(&old, &late).await?,
        "a replace based on the deleted task matched its re-creation"
    );
    assert!(
        !docs.delete_task(&old).await?,
        "a delete based on the deleted task matched its re-creation"
    );
    let after = stored(docs, &key).await?;
    assert_eq!(after.value, second, "the re-created task was changed");

    // The current copy still writes.
    assert!(
        docs.replace_task(&after, &late_of(&second, clock.now()))
            .await?
    );
    Ok(())
}

/// `task` written once more at `now` (a new version, nothing else changed).
fn late_of(task: &Task, now: Timestamp) -> Task {
    let mut t = task.clone();
    t.version += 1;
    t.updated_at = now;
    t
}
