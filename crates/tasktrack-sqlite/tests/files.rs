//! Bad files and foreign writers: every one a typed, readable error, never a panic.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::Duration;
use tasktrack_core::*;

fn url(path: &std::path::Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Creates task `a` in `job`: the one task these cases put in a file before they damage or
/// lock it.
async fn create_a(store: &impl Store, job: &JobName, now: Timestamp) -> Result<Created> {
    store
        .create(
            job,
            &[NewTask::new(TaskId::new("a").unwrap())],
            CreateMode::SkipExisting,
            now,
        )
        .await
}

#[tokio::test]
async fn a_directory_is_invalid_input_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = tasktrack_sqlite::open(&url(dir.path())).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("directory"), "{err}");
}

#[tokio::test]
async fn a_corrupt_file_is_corrupt_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(
        &path,
        (0..4096u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let err = tasktrack_sqlite::open(&url(&path)).await.unwrap_err();
    match &err {
        Error::Corrupt { location, .. } => assert!(location.contains("garbage.db"), "{err}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_text_file_is_corrupt_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(50)).unwrap();
    let err = tasktrack_sqlite::open(&url(&path)).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

#[tokio::test]
async fn a_missing_directory_is_unavailable_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/t.db");
    let err = tasktrack_sqlite::open(&url(&path)).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("no/such/dir/t.db"), "{err}");
}

#[tokio::test]
async fn a_schema_newer_than_the_code_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    drop(tasktrack_sqlite::open(&url(&path)).await.unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", tasktrack_sqlite::SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = tasktrack_sqlite::open(&url(&path)).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[tokio::test]
async fn reopening_keeps_the_data_and_migrates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let job = JobName::new("j").unwrap();
    let now = Timestamp::from_millis(1_000);
    {
        let store = tasktrack_sqlite::open(&url(&path)).await.unwrap();
        create_a(&store, &job, now).await.unwrap();
    }
    let store = tasktrack_sqlite::open(&url(&path)).await.unwrap();
    store.init().await.unwrap();
    assert_eq!(store.counts(&job).await.unwrap().by_status.pending, 1);
}

/// A version-1 file (counters kept by an update trigger) is migrated on open; its counts stay
/// exact through the store's own counter moves afterwards.
#[tokio::test]
async fn a_version_1_file_is_migrated_and_keeps_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let job = JobName::new("j").unwrap();
    let now = Timestamp::from_millis(1_000);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../migrations/sqlite/001_init.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let store = tasktrack_sqlite::open(&url(&path)).await.unwrap();
    let ids: Vec<NewTask> = ["a", "b", "c"]
        .iter()
        .map(|id| NewTask::new(TaskId::new(*id).unwrap()))
        .collect();
    store
        .create(&job, &ids, CreateMode::SkipExisting, now)
        .await
        .unwrap();
    let claimed = store
        .claim_next(
            &job,
            &ClaimNext::new("w", Duration::from_secs(60)).with_limit(2),
            now,
        )
        .await
        .unwrap();
    let done: Vec<_> = claimed
        .iter()
        .map(|c| (c.lease.clone(), serde_json::json!(null)))
        .collect();
    store.succeed_many(&done[..1], now).await.unwrap();
    let by_status = store.counts(&job).await.unwrap().by_status;
    assert_eq!(
        (
            by_status.pending,
            by_status.in_progress,
            by_status.succeeded
        ),
        (1, 1, 1)
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, tasktrack_sqlite::SCHEMA_VERSION);
}

#[tokio::test]
async fn a_corrupt_row_is_corrupt_naming_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = tasktrack_sqlite::open(&url(&path)).await.unwrap();
    let job = JobName::new("j").unwrap();
    let now = Timestamp::from_millis(1_000);
    create_a(&store, &job, now).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE tasktrack_task SET data = '{not json' WHERE id = 'a'",
        [],
    )
    .unwrap();
    let err = store
        .get(&TaskKey::parse("j", "a").unwrap())
        .await
        .unwrap_err();
    match &err {
        Error::Corrupt { location, .. } => assert!(
            location.contains("t.db") && location.contains("j/a"),
            "{err}"
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A claim that meets the bad row sets it aside instead of failing or panicking (so that
    // it cannot stop the job: tests/damaged.rs); the row stays corrupt for `get`.
    let claimed = store
        .claim_next(&job, &ClaimNext::new("w", Duration::from_secs(5)), now)
        .await
        .unwrap();
    assert!(claimed.is_empty(), "{claimed:?}");
    let err = store
        .get(&TaskKey::parse("j", "a").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

#[tokio::test]
async fn a_writer_held_past_the_busy_timeout_is_transient_contention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = tasktrack_sqlite::open(&format!("{}?busy_timeout=100ms", url(&path)))
        .await
        .unwrap();
    let job = JobName::new("j").unwrap();
    let now = Timestamp::from_millis(1_000);
    // Another process holds the write lock.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = create_a(&store, &job, now).await.unwrap_err();
    assert!(matches!(err, Error::Contention(_)), "{err:?}");
    assert!(err.is_transient());
    // Reads are served from the WAL snapshot meanwhile.
    assert!(!store.counts(&job).await.unwrap().exists);
    other.execute_batch("COMMIT").unwrap();
    create_a(&store, &job, now).await.unwrap();
}

#[tokio::test]
async fn the_view_shows_stable_columns_with_readable_times() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = tasktrack_sqlite::open(&url(&path)).await.unwrap();
    let job = JobName::new("j").unwrap();
    let now = Timestamp::parse("2026-11-23T10:00:00.250Z").unwrap();
    create_a(&store, &job, now).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (status, code, created): (String, i64, String) = conn
        .query_row("SELECT status, status_code, created_at FROM tasktrack_tasks WHERE job = 'j' AND id = 'a'", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((status.as_str(), code), ("pending", 0));
    assert_eq!(created, "2026-11-23T10:00:00.250Z");
}

/// An error that makes SQLite roll back the whole transaction by itself (here a foreign
/// trigger's `RAISE(ROLLBACK)`; a full disk or an I/O error does the same) in the middle of a
/// group-commit batch: every operation is answered as it ended up stored. The ones queued after
/// it are not run at all (they were run outside any transaction, committed at once, and
/// answered as failed: a claim answered `Err` whose lease was stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_sqlite_rolls_back_itself_answers_every_operation_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = std::sync::Arc::new(tasktrack_sqlite::open(&url(&path)).await.unwrap());
    let (job, now) = (JobName::new("j").unwrap(), Timestamp::from_millis(1_000));
    let ids = ["t0", "t1", "poison", "t2", "t3"];
    let tasks: Vec<NewTask> = ids
        .iter()
        .map(|id| NewTask::new(TaskId::new(*id).unwrap()))
        .collect();
    store
        .create(&job, &tasks, CreateMode::SkipExisting, now)
        .await
        .unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER poison BEFORE UPDATE ON tasktrack_task WHEN new.id = 'poison' \
             BEGIN SELECT RAISE(ROLLBACK, 'poisoned'); END;",
        )
        .unwrap();
    for round in 0..5 {
        // A large create (one transaction: 1,000 tasks) keeps the writer busy, so that the
        // claims queue into one batch.
        let other = JobName::new(format!("busy{round}")).unwrap();
        let big: Vec<NewTask> = (0..1_000)
            .map(|i| {
                NewTask::new(TaskId::new(format!("b{i}")).unwrap())
                    .with_data(serde_json::json!("x".repeat(200)))
            })
            .collect();
        let busy = {
            let (store, other) = (store.clone(), other.clone());
            tokio::spawn(async move {
                store
                    .create(&other, &big, CreateMode::SkipExisting, now)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(2)).await;
        let claims = ids.map(|id| {
            let (store, key) = (
                store.clone(),
                TaskKey::new(job.clone(), TaskId::new(id).unwrap()),
            );
            tokio::spawn(async move {
                let claim = Claim::new(format!("w{round}"), Duration::from_secs(60));
                store.claim(&key, &claim, now).await
            })
        });
        // The create may share the poisoned batch: then it is answered as rolled back.
        let created = busy.await.unwrap();
        let known = store.counts(&other).await.unwrap().known;
        assert_eq!(
            known,
            if created.is_ok() { 1_000 } else { 0 },
            "{created:?}"
        );
        for (id, claim) in ids.iter().zip(claims) {
            let answer = claim.await.unwrap();
            let stored = store
                .get(&TaskKey::new(job.clone(), TaskId::new(*id).unwrap()))
                .await
                .unwrap();
            match answer {
                Ok(c) => assert_eq!(
                    (stored.status, stored.token),
                    (Status::InProgress, c.lease.token),
                    "{id}: granted and stored"
                ),
                Err(e) => {
                    let held = stored.lease.as_ref().map(|l| l.owner.clone());
                    assert_ne!(
                        held.as_deref(),
                        Some(format!("w{round}").as_str()),
                        "{id}: answered {e} but stored under this round's lease"
                    );
                }
            }
        }
        // Give every task back for the next round.
        for id in ids {
            let key = TaskKey::new(job.clone(), TaskId::new(id).unwrap());
            if let Ok(task) = store.get(&key).await
                && task.lease.is_some()
            {
                let lease = lifecycle::lease_of(&task);
                store.release(&lease, now).await.unwrap();
            }
        }
    }
}
