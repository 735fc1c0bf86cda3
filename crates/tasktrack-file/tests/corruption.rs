//! Damaged records: an error naming the file, every other task still readable, nothing dropped
//! or overwritten; a damaged or missing index is rebuilt from the task files.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use common::{journal, now, open, task_file};
use std::path::Path;
use std::time::Duration;
use tasktrack_core::*;
use tasktrack_file::FileStore;

/// Creates `t0` … `t{n-1}` in `job`.
async fn create_tasks(store: &FileStore, job: &JobName, n: usize) {
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| NewTask::new(TaskId::new(format!("t{i}")).unwrap()))
        .collect();
    store
        .create(job, &tasks, CreateMode::SkipExisting, now())
        .await
        .unwrap();
}

/// A store on `dir` holding job `j` with `n` pending tasks.
async fn setup(dir: &Path, n: usize) -> (FileStore, JobName) {
    let store = open(dir).await;
    let job = JobName::new("j").unwrap();
    create_tasks(&store, &job, n).await;
    (store, job)
}

/// Creates task `id` in `job` again (or for the first time).
async fn create_one(store: &FileStore, job: &JobName, id: &str) -> Result<Created> {
    let task = NewTask::new(TaskId::new(id).unwrap());
    store
        .create(job, &[task], CreateMode::SkipExisting, now())
        .await
}

/// Claims up to `limit` tasks of `job` for 30 s.
async fn claim(store: &FileStore, job: &JobName, limit: usize) -> Vec<Claimed> {
    let req = ClaimNext::new("w", Duration::from_secs(30)).with_limit(limit);
    store.claim_next(job, &req, now()).await.unwrap()
}

/// Purges the succeeded tasks of `job` (of every job if `None`): how many.
async fn purge_succeeded(store: &FileStore, job: Option<&JobName>) -> u64 {
    let purge = Purge {
        job: job.cloned(),
        statuses: vec![Status::Succeeded],
        older_than: Timestamp::from_millis(now().as_millis() + 1),
    };
    store.purge(&purge).await.unwrap()
}

fn key(job: &JobName, id: &str) -> TaskKey {
    TaskKey::new(job.clone(), TaskId::new(id).unwrap())
}

/// True, with a SKIPPED line saying what follows (`so`), where the system has no boot id: the
/// cases that simulate a reboot need one.
fn no_boot_id(so: &str) -> bool {
    let missing = !Path::new("/proc/sys/kernel/random/boot_id").exists();
    if missing {
        eprintln!("SKIPPED: no boot id on this system, so {so}");
    }
    missing
}

/// A journal `header` line, stamped as written in another boot.
fn in_an_earlier_boot(header: &str) -> serde_json::Value {
    let mut header: serde_json::Value = serde_json::from_str(header).unwrap();
    header["boot"] = serde_json::json!("an-earlier-boot");
    header
}

/// A journal intent saying task `id` succeeded (at version 9), a change its file never got.
fn intent_succeeded(id: &str) -> String {
    format!(
        r#"{{"put":{{"id":"{id}","version":9,"status":"succeeded","stage":null,"priority":0,"claimable_at":null,"updated_at":"2027-01-15T08:00:00.000Z"}}}}"#
    )
}

fn assert_corrupt_naming<T: std::fmt::Debug>(result: Result<T>, path: &Path, needle: &str) {
    match result {
        Err(Error::Corrupt { location, message }) => {
            assert_eq!(location, path.display().to_string());
            assert!(message.contains(needle), "{message}");
        }
        other => panic!("expected Corrupt at {}, got {other:?}", path.display()),
    }
}

#[tokio::test]
async fn truncated_invalid_and_unknown_version_files_are_named_and_the_rest_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let (store, job) = setup(dir.path(), 5).await;
    let (t0, t1, t2) = (
        task_file(dir.path(), "j", "t0"),
        task_file(dir.path(), "j", "t1"),
        task_file(dir.path(), "j", "t2"),
    );
    let full = std::fs::read(&t0).unwrap();
    std::fs::write(&t0, &full[..full.len() / 2]).unwrap();
    std::fs::write(&t1, b"{ this is not json").unwrap();
    let v2 = String::from_utf8(std::fs::read(&t2).unwrap())
        .unwrap()
        .replace("\"schema\": 1", "\"schema\": 99");
    std::fs::write(&t2, &v2).unwrap();

    assert_corrupt_naming(store.get(&key(&job, "t0")).await, &t0, "invalid JSON");
    assert_corrupt_naming(store.get(&key(&job, "t1")).await, &t1, "invalid JSON");
    assert_corrupt_naming(
        store.get(&key(&job, "t2")).await,
        &t2,
        "unknown schema version 99",
    );
    assert_eq!(
        store.get(&key(&job, "t3")).await.unwrap().status,
        Status::Pending
    );

    // Nothing is overwritten: creating, claiming or ignoring a damaged task is an error.
    let err = create_one(&store, &job, "t0").await;
    assert_eq!(err.unwrap_err().kind(), ErrorKind::Corrupt);
    let err = store
        .claim(
            &key(&job, "t1"),
            &Claim::new("w", Duration::from_secs(30)),
            now(),
        )
        .await;
    assert_eq!(err.unwrap_err().kind(), ErrorKind::Corrupt);
    assert_eq!(std::fs::read(&t0).unwrap(), &full[..full.len() / 2]);
    assert_eq!(std::fs::read_to_string(&t2).unwrap(), v2);

    // Counts still see five tasks; claim_next hands out the two readable ones and skips the rest.
    assert_eq!(store.counts(&job).await.unwrap().known, 5);
    let claimed = claim(&store, &job, 10).await;
    let mut ids: Vec<_> = claimed.iter().map(|c| c.task.id.to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["t3", "t4"]);
    for c in &claimed {
        store
            .succeed(&c.lease, serde_json::json!(1), now())
            .await
            .unwrap();
    }
    // Reopening (a new process's view, which replays the journal) changes nothing.
    let again = open(dir.path()).await;
    assert_eq!(again.counts(&job).await.unwrap().by_status.succeeded, 2);
    assert_corrupt_naming(again.get(&key(&job, "t0")).await, &t0, "invalid JSON");
}

#[tokio::test]
async fn a_missing_or_damaged_index_is_rebuilt_from_the_task_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, job) = setup(dir.path(), 20).await;
    let claimed = claim(&store, &job, 5).await;
    assert_eq!(claimed.len(), 5);
    let journal = journal(dir.path(), "j");

    // Deleted: a new view rebuilds it.
    std::fs::remove_file(&journal).unwrap();
    let fresh = open(dir.path()).await;
    let counts = fresh.counts(&job).await.unwrap();
    assert_eq!(
        (counts.by_status.pending, counts.by_status.in_progress),
        (15, 5)
    );
    assert!(journal.exists());

    // A garbage line in the middle: rebuilt too.
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.insert_str(text.find('\n').unwrap() + 1, "garbage\n");
    std::fs::write(&journal, text).unwrap();
    let fresh = open(dir.path()).await;
    assert_eq!(fresh.counts(&job).await.unwrap().by_status.in_progress, 5);

    // The old view notices the rewritten journal (new generation) and agrees.
    store
        .succeed(&claimed[0].lease, serde_json::json!(1), now())
        .await
        .unwrap();
    assert_eq!(fresh.counts(&job).await.unwrap().by_status.succeeded, 1);
    assert_eq!(store.counts(&job).await.unwrap().by_status.succeeded, 1);
}

#[tokio::test]
async fn a_torn_tail_or_unfinished_transaction_left_by_a_dead_writer_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let (store, job) = setup(dir.path(), 3).await;
    let journal = journal(dir.path(), "j");
    let append = |bytes: &str| {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap()
            .write_all(bytes.as_bytes())
            .unwrap();
    };
    // An intent saying t0 succeeded (its file was never renamed), then half a line.
    let intent = intent_succeeded("t0");
    append(&format!("{intent}\n{{\"put\":{{\"id\":\"t1"));
    std::fs::write(dir.path().join("jobs/j/scratch/123-0.tmp"), b"half a task").unwrap();

    let other = open(dir.path()).await;
    let counts = other.counts(&job).await.unwrap();
    assert_eq!(
        (counts.by_status.pending, counts.by_status.succeeded),
        (3, 0),
        "the files are the truth"
    );
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(
        text.ends_with("\"commit\"\n"),
        "the transaction was closed: {text}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("jobs/j/scratch"))
            .unwrap()
            .count(),
        0,
        "scratch emptied"
    );
    // The first view catches up with the repair too.
    let claimed = claim(&store, &job, 3).await;
    assert_eq!(claimed.len(), 3);
}

#[tokio::test]
async fn an_unknown_store_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tasktrack-file.json"),
        br#"{"schema": 7, "format": "tasktrack-file"}"#,
    )
    .unwrap();
    let err = tasktrack_file::open(&format!("file://{}", dir.path().display()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("tasktrack-file.json"), "{err}");
}

#[tokio::test]
async fn a_journal_from_an_earlier_boot_is_rebuilt_from_the_files() {
    if no_boot_id("journals are fsynced and never rebuilt on boot") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_store, job) = setup(dir.path(), 4).await;
    let journal = journal(dir.path(), "j");
    // A power loss: the journal claims a committed change the files never got, and was written
    // in another boot.
    let text = std::fs::read_to_string(&journal).unwrap();
    let (header, rest) = text.split_once('\n').unwrap();
    let header = in_an_earlier_boot(header);
    let lost = intent_succeeded("t0");
    std::fs::write(&journal, format!("{header}\n{rest}{lost}\n\"commit\"\n")).unwrap();

    let after_reboot = open(dir.path()).await;
    let counts = after_reboot.counts(&job).await.unwrap();
    assert_eq!(
        (counts.by_status.pending, counts.by_status.succeeded),
        (4, 0),
        "the files are the truth"
    );
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(
        !text.contains("an-earlier-boot"),
        "rebuilt under this boot: {text}"
    );
}

#[tokio::test]
async fn after_a_power_loss_the_journal_restores_task_files_the_disk_lost() {
    if no_boot_id("task files are fsynced themselves") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (store, job) = setup(dir.path(), 4).await;
    let t0 = task_file(dir.path(), "j", "t0");
    let before = std::fs::read(&t0).unwrap();
    let claimed = claim(&store, &job, 1).await;
    assert_eq!(claimed[0].task.id.as_str(), "t0");
    store
        .succeed(&claimed[0].lease, serde_json::json!("kept"), now())
        .await
        .unwrap();
    drop(store);

    // The power loss: acknowledged changes only ever reached the journal (the one thing a
    // transaction fsyncs). t0's rename is undone, t1's data never left the cache (its name
    // survived, its blocks did not), and the last append was torn.
    std::fs::write(&t0, before).unwrap();
    std::fs::write(task_file(dir.path(), "j", "t1"), vec![0u8; 300]).unwrap();
    let journal = journal(dir.path(), "j");
    let text = std::fs::read_to_string(&journal).unwrap();
    let (header, rest) = text.split_once('\n').unwrap();
    let header = in_an_earlier_boot(header);
    std::fs::write(&journal, format!("{header}\n{rest}{{\"write\":{{\"id\"")).unwrap();

    let after_reboot = open(dir.path()).await;
    let t0 = after_reboot.get(&key(&job, "t0")).await.unwrap();
    assert_eq!(
        (t0.status, t0.output),
        (Status::Succeeded, Some(serde_json::json!("kept"))),
        "the acknowledged success is back"
    );
    assert_eq!(
        after_reboot.get(&key(&job, "t1")).await.unwrap().status,
        Status::Pending,
        "the file whose data was lost is rewritten"
    );
    let counts = after_reboot.counts(&job).await.unwrap();
    assert_eq!(
        (counts.by_status.pending, counts.by_status.succeeded),
        (3, 1)
    );
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(
        !text.contains("an-earlier-boot"),
        "a fresh snapshot: {text}"
    );
}

/// Every page of `job`'s tasks, `limit` at a time: the ids of the tasks, and of the unreadable
/// ones the pages name.
async fn list_all(store: &FileStore, job: &JobName, limit: usize) -> (Vec<String>, Vec<String>) {
    let mut query = TaskQuery::new(job.clone()).with_limit(limit);
    let (mut ids, mut unreadable) = (Vec::new(), Vec::new());
    loop {
        let page = store.list(&query).await.unwrap();
        assert!(page.tasks.len() + page.unreadable.len() <= limit);
        ids.extend(page.tasks.iter().map(|t| t.id.to_string()));
        unreadable.extend(page.unreadable.iter().map(|u| u.id.to_string()));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return (ids, unreadable),
        }
    }
}

/// Claims up to `limit` tasks of `job` and succeeds each; the ids it ran, in claim order.
async fn claim_and_succeed(store: &FileStore, job: &JobName, limit: usize) -> Vec<String> {
    let claimed = claim(store, job, limit).await;
    for c in &claimed {
        store
            .succeed(&c.lease, serde_json::json!(1), now())
            .await
            .unwrap();
    }
    claimed.iter().map(|c| c.task.id.to_string()).collect()
}

/// The `*.json` files left in the job's `tasks/` directory.
fn task_files(dir: &Path, job: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("jobs").join(job).join("tasks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// How the index comes to be rebuilt while a task file is damaged.
#[derive(Debug, Clone, Copy)]
enum Rebuild {
    /// `index.log` deleted (the documented step after a hand edit).
    Deleted,
    /// A line of `index.log` that does not parse.
    BadLine,
    /// The journal was written in an earlier boot.
    Reboot,
    /// A dead writer's unfinished transaction names the damaged task.
    Unfinished,
}

/// One damaged task file (t1) and one file holding a task that does not belong at its path,
/// then a rebuild: both are left out of the index (so lists do not name them either), and every
/// other task, counts, claims, lists and deleting the job all work; deleting the job removes
/// the damaged files too.
async fn a_rebuild_leaves_damaged_files_out(how: Rebuild) {
    let dir = tempfile::tempdir().unwrap();
    let (store, job) = setup(dir.path(), 6).await;
    let journal = journal(dir.path(), "j");
    if let Rebuild::Reboot = how {
        // A journal made of a snapshot only (no full records to restore t1 from).
        std::fs::remove_file(&journal).unwrap();
        assert_eq!(open(dir.path()).await.counts(&job).await.unwrap().known, 6);
    }
    drop(store);
    let t1 = task_file(dir.path(), "j", "t1");
    std::fs::write(&t1, b"{ this is not json").unwrap();
    let stray = task_file(dir.path(), "j", "stray");
    std::fs::copy(task_file(dir.path(), "j", "t2"), &stray).unwrap();
    let text = std::fs::read_to_string(&journal).unwrap();
    let (header, rest) = text.split_once('\n').unwrap();
    match how {
        Rebuild::Deleted => std::fs::remove_file(&journal).unwrap(),
        Rebuild::BadLine => std::fs::write(&journal, format!("{header}\ngarbage\n{rest}")).unwrap(),
        Rebuild::Reboot => {
            let header = in_an_earlier_boot(header);
            std::fs::write(&journal, format!("{header}\n{rest}")).unwrap();
        }
        Rebuild::Unfinished => {
            let intent = intent_succeeded("t1");
            std::fs::write(&journal, format!("{text}{intent}\n")).unwrap();
        }
    }

    let store = open(dir.path()).await;
    assert_eq!(
        store.get(&key(&job, "t0")).await.unwrap().status,
        Status::Pending,
        "{how:?}"
    );
    assert_corrupt_naming(store.get(&key(&job, "t1")).await, &t1, "invalid JSON");
    let counts = store.counts(&job).await.unwrap();
    assert!(counts.exists);
    assert_eq!((counts.known, counts.by_status.pending), (5, 5), "{how:?}");
    let healthy = ["t0", "t2", "t3", "t4", "t5"];
    let listed = list_all(&store, &job, 2).await;
    assert_eq!(
        listed,
        (healthy.map(String::from).to_vec(), vec![]),
        "{how:?}"
    );
    // Nothing overwrites the damaged file.
    let err = create_one(&store, &job, "t1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{how:?}");
    let mut ids = claim_and_succeed(&store, &job, 10).await;
    ids.sort();
    assert_eq!(ids, healthy, "{how:?}");

    // The job can be deleted, and that takes the damaged files with it.
    let deleted = store.delete_job(&job, now()).await.unwrap();
    assert_eq!(
        deleted,
        Deleted {
            tasks: 5,
            kept_leased: 0,
            job_removed: true
        },
        "{how:?}"
    );
    assert_eq!(task_files(dir.path(), "j"), Vec::<String>::new(), "{how:?}");
    assert!(store.jobs(None).await.unwrap().is_empty());
    assert_eq!(
        store.get(&key(&job, "t1")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let after = open(dir.path()).await.counts(&job).await.unwrap();
    assert_eq!((after.exists, after.known), (false, 0), "{how:?}");
}

#[tokio::test]
async fn a_damaged_file_found_when_index_log_is_deleted_leaves_the_job_usable() {
    a_rebuild_leaves_damaged_files_out(Rebuild::Deleted).await;
}

#[tokio::test]
async fn a_damaged_file_found_when_index_log_has_a_bad_line_leaves_the_job_usable() {
    a_rebuild_leaves_damaged_files_out(Rebuild::BadLine).await;
}

#[tokio::test]
async fn a_damaged_file_found_after_a_reboot_leaves_the_job_usable() {
    if no_boot_id("a reboot does not rebuild the index") {
        return;
    }
    a_rebuild_leaves_damaged_files_out(Rebuild::Reboot).await;
}

#[tokio::test]
async fn a_damaged_file_named_by_an_unfinished_transaction_leaves_the_job_usable() {
    a_rebuild_leaves_damaged_files_out(Rebuild::Unfinished).await;
}

/// Files damaged while the index knows them: list pages name them in `unreadable` at their
/// index position, once each, with cursors that miss no readable task; purge leaves them
/// alone; delete_job removes them with the job.
#[tokio::test]
async fn damaged_files_the_index_knows_are_named_by_lists_and_removed_with_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let (store, job) = setup(dir.path(), 7).await;
    for id in ["t1", "t3", "t4"] {
        std::fs::write(task_file(dir.path(), "j", id), b"").unwrap();
    }
    for limit in [1, 2, 3, 100] {
        let (tasks, unreadable) = list_all(&store, &job, limit).await;
        assert_eq!(tasks, ["t0", "t2", "t5", "t6"], "limit {limit}");
        assert_eq!(unreadable, ["t1", "t3", "t4"], "limit {limit}");
    }
    let first = store
        .list(&TaskQuery::new(job.clone()).with_limit(2))
        .await
        .unwrap();
    let ids: Vec<&str> = first.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["t0"], "a damaged task takes its place in the page");
    assert_eq!(first.unreadable.len(), 1, "{first:?}");
    assert_eq!(first.unreadable[0].id.as_str(), "t1");
    let t1 = task_file(dir.path(), "j", "t1").display().to_string();
    assert!(first.unreadable[0].error.contains(&t1), "{first:?}");
    assert!(first.next.is_some());

    claim_and_succeed(&store, &job, 2).await;
    let purged = purge_succeeded(&store, Some(&job)).await;
    assert_eq!(purged, 2, "the damaged three are left alone");
    assert_eq!(
        store.counts(&job).await.unwrap().known,
        5,
        "the index still counts the damaged three"
    );

    let deleted = store.delete_job(&job, now()).await.unwrap();
    assert_eq!(
        (deleted.tasks, deleted.job_removed),
        (5, true),
        "t5, t6 and the damaged three"
    );
    assert_eq!(task_files(dir.path(), "j"), Vec::<String>::new());
    let counts = store.counts(&job).await.unwrap();
    assert_eq!((counts.exists, counts.known), (false, 0));
    let counts = open(dir.path()).await.counts(&job).await.unwrap();
    assert_eq!(
        (counts.exists, counts.known),
        (false, 0),
        "the removals are in the journal"
    );
}

/// Stray files in `jobs/` are not jobs, and one damaged (or misplaced) job record is left out
/// of `jobs()` instead of failing it, so `purge` of all jobs still reaches the others.
#[tokio::test]
async fn stray_entries_and_damaged_job_records_do_not_stop_jobs_or_purge_of_all_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for name in ["a", "b", "c"] {
        let job = JobName::new(name).unwrap();
        create_tasks(&store, &job, 2).await;
        claim_and_succeed(&store, &job, 2).await;
    }
    let jobs_dir = dir.path().join("jobs");
    std::fs::write(jobs_dir.join(".DS_Store"), b"\0\0\0\x01Bud1").unwrap();
    std::fs::write(jobs_dir.join("README"), b"these are my jobs").unwrap();
    std::fs::create_dir(jobs_dir.join("notes")).unwrap();
    let b_record = jobs_dir.join("b/job.json");
    std::fs::write(&b_record, b"{ not json").unwrap();
    // A copy of a's record in another directory names a job that does not live there.
    std::fs::create_dir(jobs_dir.join("d")).unwrap();
    std::fs::copy(jobs_dir.join("a/job.json"), jobs_dir.join("d/job.json")).unwrap();

    let names: Vec<String> = store
        .jobs(None)
        .await
        .unwrap()
        .iter()
        .map(|j| j.name.to_string())
        .collect();
    assert_eq!(names, ["a", "c"]);
    let purged = purge_succeeded(&store, None).await;
    assert_eq!(purged, 4, "a's and c's tasks");
    for name in ["a", "c"] {
        let job = JobName::new(name).unwrap();
        assert_eq!(store.counts(&job).await.unwrap().known, 0, "{name}");
    }
    // b is left alone, and its record is named wherever it is needed.
    let b = JobName::new("b").unwrap();
    let (tasks, unreadable) = list_all(&store, &b, 10).await;
    assert_eq!(
        (tasks, unreadable),
        (vec!["t0".into(), "t1".into()], vec![])
    );
    assert_corrupt_naming(store.get_job(&b).await, &b_record, "invalid JSON");
    assert_corrupt_naming(store.counts(&b).await, &b_record, "invalid JSON");
}

/// A task file that reads but whose token was edited to the top of its range (a claim would
/// have to wrap it) is skipped by `claim_next`, as an unreadable one is, not the claim's error.
#[tokio::test]
async fn a_task_whose_token_cannot_be_bumped_is_skipped_by_claims() {
    let dir = tempfile::tempdir().unwrap();
    let (store, job) = setup(dir.path(), 2).await;
    let path = task_file(dir.path(), "j", "t0");
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    doc["token"] = serde_json::json!(u64::MAX);
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let ids: Vec<String> = claim(&store, &job, 1)
        .await
        .iter()
        .map(|c| c.task.id.to_string())
        .collect();
    assert_eq!(ids, ["t1"], "t0, first in claim order, is skipped");
    assert_eq!(store.get(&key(&job, "t0")).await.unwrap().token, u64::MAX);
}

/// `delete` removes a damaged task whatever its lease says, and leaves counts, lists and claims
/// right (the testkit's case; DESIGN.md, "A damaged task record does not stop its job"). The
/// file is damaged as a hand edit would (invalid JSON) while the index still knows it.
#[tokio::test]
async fn a_damaged_task_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(dir.path()).await);
    let h = testkit::Harness::new(store, "a_damaged_task_can_be_deleted", 1.0);
    testkit::damaged::a_damaged_task_can_be_deleted(h, damage_in(dir.path()))
        .await
        .unwrap();
}

/// The testkit's `damage` hand: writes invalid JSON over the task's file (under `root`), as a
/// hand edit would, while the index still knows it.
fn damage_in(root: &Path) -> impl Fn(TaskKey) -> std::future::Ready<()> {
    let root = root.to_path_buf();
    move |key: TaskKey| {
        let path = task_file(
            &root,
            &tasktrack_file::keys::encode(key.job.as_str()),
            &tasktrack_file::keys::encode(key.id.as_str()),
        );
        std::fs::write(path, b"{ this is not json").unwrap();
        std::future::ready(())
    }
}

/// A list names a damaged task in its page's `unreadable`, at the place its index entry gives
/// it, instead of hiding it (or, before, skipping it silently); `delete_job` removes it with the
/// job (the testkit's case; DESIGN.md, "A damaged task record does not stop its job").
#[tokio::test]
async fn a_damaged_task_is_named_by_lists_not_hiding_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(dir.path()).await);
    let name = "a_damaged_task_is_named_by_lists_not_hiding_the_others";
    let h = testkit::Harness::new(store, name, 1.0);
    testkit::damaged::a_damaged_task_is_named_by_lists_not_hiding_the_others(
        h,
        damage_in(dir.path()),
    )
    .await
    .unwrap();
}

/// A damaged file a rebuild left out of the index can be deleted too: it goes directly (no
/// index entry or count names it), the other tasks' counts stay, and the id is free again.
#[tokio::test]
async fn a_damaged_file_the_index_left_out_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (store, job) = setup(dir.path(), 3).await;
    drop(store);
    let t1 = task_file(dir.path(), "j", "t1");
    std::fs::write(&t1, b"{ this is not json").unwrap();
    std::fs::remove_file(journal(dir.path(), "j")).unwrap();

    let store = open(dir.path()).await;
    assert_eq!(store.counts(&job).await.unwrap().known, 2, "t1 left out");
    store.delete(&key(&job, "t1"), now()).await.unwrap();
    assert!(!t1.exists(), "the damaged file is gone");
    assert_eq!(
        store.get(&key(&job, "t1")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(task_files(dir.path(), "j"), ["t0.json", "t2.json"]);
    create_one(&store, &job, "t1").await.unwrap();
    let counts = open(dir.path()).await.counts(&job).await.unwrap();
    assert_eq!((counts.known, counts.by_status.pending), (3, 3));
}

/// A batched completion over two jobs whose second job's transaction fails (its scratch
/// directory replaced by a plain file, so nothing can be written there): the first job's
/// successes, committed, are answered as such; only the second job's leases answer the error.
/// That error is `Unavailable`, not a failure: the change was in the journal already, and what
/// of it happened is settled by the task files at the job's next access (here: nothing, so the
/// worker's retry of its success, which `Unavailable` calls for, records it).
#[tokio::test]
async fn succeed_many_keeps_the_answers_of_jobs_that_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut done = Vec::new();
    for name in ["j1", "j2"] {
        let job = JobName::new(name).unwrap();
        let task = [NewTask::new(TaskId::new("t").unwrap())];
        store
            .create(&job, &task, CreateMode::SkipExisting, now())
            .await
            .unwrap();
        let req = ClaimNext::new("w", std::time::Duration::from_secs(60));
        let won = store.claim_next(&job, &req, now()).await.unwrap();
        done.push((won[0].lease.clone(), serde_json::json!(name)));
    }
    let scratch = dir.path().join("jobs").join("j2").join("scratch");
    std::fs::remove_dir_all(&scratch).unwrap();
    std::fs::write(&scratch, "not a directory").unwrap();
    let answers = store.succeed_many(&done, now()).await.unwrap();
    assert_eq!(answers[0].as_ref().unwrap().status, Status::Succeeded);
    let failed = answers[1].as_ref().unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Unavailable, "{failed}");
    let j1 = TaskKey::parse("j1", "t").unwrap();
    assert_eq!(store.get(&j1).await.unwrap().status, Status::Succeeded);

    std::fs::remove_file(&scratch).unwrap();
    std::fs::create_dir(&scratch).unwrap();
    let j2 = TaskKey::parse("j2", "t").unwrap();
    assert_eq!(store.get(&j2).await.unwrap().status, Status::InProgress);
    let retried = store.succeed(&done[1].0, done[1].1.clone(), now()).await;
    assert_eq!(retried.unwrap().status, Status::Succeeded);
}
