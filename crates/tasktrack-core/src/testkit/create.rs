//! Conformance cases: creating tasks and reading them back.

use super::*;
use serde_json::json;

/// A new task is `pending` with zero attempts and the job's default attempt limit.
pub async fn create_then_get_returns_pending_with_job_defaults(h: Harness) -> Result<()> {
    h.set_job(JobSpec {
        max_attempts: Some(5),
        ..Default::default()
    })
    .await?;
    let tasks = [
        NewTask::new(tid("a"))
            .with_data(json!({"file": "a.png"}))
            .with_priority(7),
        NewTask::new(tid("b")).with_max_attempts(2),
    ];
    let created = h
        .store
        .create(&h.job, &tasks, CreateMode::SkipExisting, h.now())
        .await?;
    assert_eq!(
        created,
        Created {
            created: 2,
            existing: 0,
            replaced: 0
        }
    );
    let a = h.get("a").await?;
    assert_eq!(
        (a.status, a.attempts, a.max_attempts, a.priority),
        (Status::Pending, 0, 5, 7)
    );
    assert_eq!(a.data, json!({"file": "a.png"}));
    assert_eq!((a.created_at, a.updated_at), (h.now(), h.now()));
    assert_eq!(
        (&a.lease, &a.output, &a.error, a.history.len()),
        (&None, &None, &None, 0)
    );
    assert_eq!(h.get("b").await?.max_attempts, 2);
    Ok(())
}

/// Creating an existing task is a no-op: its status, attempts and data stay as they are.
pub async fn create_is_idempotent_and_leaves_existing_tasks_alone(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let c = h.claim("a", "w1").await?;
    h.advance(Duration::from_secs(1));
    let again = [
        NewTask::new(tid("a")).with_data(json!(1)),
        NewTask::new(tid("b")),
    ];
    let created = h
        .store
        .create(&h.job, &again, CreateMode::SkipExisting, h.now())
        .await?;
    assert_eq!(
        created,
        Created {
            created: 1,
            existing: 1,
            replaced: 0
        }
    );
    let a = h.get("a").await?;
    assert_eq!(
        (a.status, a.attempts, a.token, &a.data),
        (Status::InProgress, 1, c.lease.token, &json!(null))
    );
    Ok(())
}

/// An id given twice in one call is one task: created by its first entry, then existing (left
/// as the first entry made it) or, with `replace`, replaced by the later entry.
pub async fn create_counts_an_id_given_twice_once(h: Harness) -> Result<()> {
    let twice = |id: &str| {
        [
            NewTask::new(tid(id)).with_data(json!("first")),
            NewTask::new(tid(id)).with_data(json!("second")),
        ]
    };
    let kept = h
        .store
        .create(&h.job, &twice("a"), CreateMode::SkipExisting, h.now())
        .await?;
    assert_eq!(
        kept,
        Created {
            created: 1,
            existing: 1,
            replaced: 0
        }
    );
    assert_eq!(h.get("a").await?.data, json!("first"));
    let replaced = h
        .store
        .create(&h.job, &twice("b"), CreateMode::Replace, h.now())
        .await?;
    assert_eq!(
        replaced,
        Created {
            created: 1,
            existing: 0,
            replaced: 1
        }
    );
    assert_eq!(h.get("b").await?.data, json!("second"));
    assert_eq!(h.store.counts(&h.job).await?.by_status.pending, 2);
    Ok(())
}

/// `replace` starts the task afresh as pending with the new data, and its old holder is fenced out.
pub async fn create_replace_starts_afresh_and_fences_the_holder(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let c = h.claim("a", "w1").await?;
    let new = [NewTask::new(tid("a")).with_data(json!({"v": 2}))];
    let created = h
        .store
        .create(&h.job, &new, CreateMode::Replace, h.now())
        .await?;
    assert_eq!(created.replaced, 1);
    let a = h.get("a").await?;
    assert_eq!(
        (a.status, a.attempts, &a.data, &a.lease),
        (Status::Pending, 0, &json!({"v": 2}), &None)
    );
    assert_stale(h.store.succeed(&c.lease, json!(1), h.now()).await);
    let again = h.claim("a", "w2").await?;
    assert!(again.lease.token > c.lease.token, "tokens are never reused");
    Ok(())
}

/// A task with a limit of zero attempts could never run: rejected, nothing written.
pub async fn create_with_zero_max_attempts_is_rejected(h: Harness) -> Result<()> {
    // Large enough that a store writing it in chunks (1,000 tasks on SQLite, 500 through the
    // adapter) would have committed some before meeting the bad one.
    let mut bad: Vec<NewTask> = (0..1_500)
        .map(|i| NewTask::new(tid(&format!("ok{i:04}"))))
        .collect();
    bad.push(NewTask::new(tid("zero")).with_max_attempts(0));
    let result = h
        .store
        .create(&h.job, &bad, CreateMode::SkipExisting, h.now())
        .await;
    assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
    assert!(
        matches!(h.get("ok0000").await, Err(Error::NotFound(_))),
        "nothing of a rejected batch is written"
    );
    Ok(())
}

/// A `not_before` past the last instant the stores can write back (year 9999) is refused as
/// invalid input, and nothing of its batch is written: stored, it would have made a record that
/// no longer reads on every store that keeps JSON.
pub async fn create_with_a_not_before_past_year_9999_is_rejected(h: Harness) -> Result<()> {
    let mut late = NewTask::new(tid("late"));
    late.not_before = Some(Timestamp::from_millis(i64::MAX));
    let batch = [NewTask::new(tid("fine")), late];
    let result = h
        .store
        .create(&h.job, &batch, CreateMode::SkipExisting, h.now())
        .await;
    assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
    assert!(matches!(h.get("fine").await, Err(Error::NotFound(_))));
    let mut last = NewTask::new(tid("last"));
    last.not_before = Some(Timestamp::MAX);
    h.store
        .create(&h.job, &[last], CreateMode::SkipExisting, h.now())
        .await?;
    assert_eq!(h.get("last").await?.not_before, Some(Timestamp::MAX));
    Ok(())
}

/// Getting a task that does not exist is `NotFound`.
pub async fn get_of_a_missing_task_is_not_found(h: Harness) -> Result<()> {
    let result = h.get("nope").await;
    assert!(matches!(result, Err(Error::NotFound(_))), "{result:?}");
    Ok(())
}

/// The JSON form of a stored task carries the status name and its stable numeric code, and
/// round-trips.
pub async fn stored_task_serializes_with_stable_status_codes(h: Harness) -> Result<()> {
    h.add(&["p", "r"]).await?;
    let c = h.claim("r", "w").await?;
    let running = serde_json::to_value(&c.task).map_err(Error::backend)?;
    assert_eq!(
        (&running["status"], &running["status_code"]),
        (&json!("in_progress"), &json!(10))
    );
    let pending = h.get("p").await?;
    let value = serde_json::to_value(&pending).map_err(Error::backend)?;
    assert_eq!(
        (&value["status"], &value["status_code"]),
        (&json!("pending"), &json!(0))
    );
    assert_eq!(value["created_at"], json!(h.now().to_rfc3339()));
    let back: Task = serde_json::from_value(value).map_err(Error::backend)?;
    assert_eq!(back, pending);
    Ok(())
}

/// Creating a task that exists (without `replace`) writes nothing to it, whatever its status:
/// not its data, priority or limit, nor its version or `updated_at`; the counts do not move.
pub async fn create_of_an_existing_task_changes_nothing_on_it(h: Harness) -> Result<()> {
    h.add(&["held", "done", "failed"]).await?;
    let held = h.claim("held", "w").await?;
    let c = h.claim("done", "w").await?;
    let done = h.store.succeed(&c.lease, json!("out"), h.now()).await?;
    let c = h.claim("failed", "w").await?;
    let failed = h.fail_now(&c.lease, "x").await?;
    let counts = h.store.counts(&h.job).await?;
    h.advance(Duration::from_secs(1));
    let again: Vec<NewTask> = ["held", "done", "failed"]
        .iter()
        .map(|id| {
            NewTask::new(tid(id))
                .with_data(json!({"new": true}))
                .with_priority(9)
                .with_max_attempts(7)
        })
        .collect();
    let created = h
        .store
        .create(&h.job, &again, CreateMode::SkipExisting, h.now())
        .await?;
    assert_eq!(
        created,
        Created {
            created: 0,
            existing: 3,
            replaced: 0
        }
    );
    assert_eq!(h.get("held").await?, held.task);
    assert_eq!(h.get("done").await?, done);
    assert_eq!(h.get("failed").await?, failed);
    assert_eq!(h.store.counts(&h.job).await?, counts);
    h.store.succeed(&held.lease, json!(1), h.now()).await?;
    Ok(())
}

/// Every status has its stable numeric code in a task's JSON (`pending` 0, `in_progress` 10,
/// `failed` 20, `exhausted` 30, `succeeded` 40, `ignored` 50), and a stored task of each
/// status round-trips through JSON.
pub async fn every_status_serializes_with_its_stable_code(h: Harness) -> Result<()> {
    h.add(&["p", "r", "f", "x", "s", "i"]).await?;
    h.claim("r", "w").await?;
    let c = h.claim("f", "w").await?;
    h.fail_now(&c.lease, "x").await?;
    let c = h.claim("x", "w").await?;
    let fatal = Fail {
        retryable: false,
        ..Fail::new(Failure::new("x", "fatal"))
    };
    h.store.fail(&c.lease, &fatal, h.now()).await?;
    let c = h.claim("s", "w").await?;
    h.store.succeed(&c.lease, json!(1), h.now()).await?;
    h.store
        .ignore(&h.key("i"), &Ignore::default(), h.now())
        .await?;
    for (id, name, code) in [
        ("p", "pending", 0),
        ("r", "in_progress", 10),
        ("f", "failed", 20),
        ("x", "exhausted", 30),
        ("s", "succeeded", 40),
        ("i", "ignored", 50),
    ] {
        let t = h.get(id).await?;
        let value = serde_json::to_value(&t).map_err(Error::backend)?;
        assert_eq!(
            (&value["status"], &value["status_code"]),
            (&json!(name), &json!(code)),
            "{id}"
        );
        let back: Task = serde_json::from_value(value).map_err(Error::backend)?;
        assert_eq!(back, t, "{id}");
    }
    Ok(())
}
