//! A task object written without its index entry (its writer died, or failed, between the two)
//! is never claimed, counted or listed, since all three read the index. Creating the task again
//! finds it existing, and must give it its entry.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;
use tasktrack_core::{
    ClaimNext, CreateMode, Created, Job, JobName, NewTask, Store, TaskId, Timestamp, lifecycle,
};
use tasktrack_s3::objects::Put;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_task_again_indexes_it_when_its_entry_is_missing() {
    let Some(store) = common::fresh("index-repair").await else {
        return;
    };
    let name = JobName::new("j").unwrap();
    let t = Timestamp::from_millis(1_800_000_000_000);
    let new = [NewTask::new(TaskId::new("a").unwrap())];
    // The task object alone, as a writer that died before its index update left it (a moment
    // earlier: the bytes differ from the create's below, which therefore finds it existing).
    let earlier = Timestamp::from_millis(t.as_millis() - 1_000);
    let task = lifecycle::create_task(&Job::new(name.clone(), earlier), &new[0], earlier).unwrap();
    let docs = store.documents();
    let written = docs
        .objects()
        .put(
            &docs.layout().task(&task.key()),
            serde_json::to_vec(&task).unwrap(),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(written, Put::Written(_)), "{written:?}");

    let created = store
        .create(&name, &new, CreateMode::SkipExisting, t)
        .await
        .unwrap();
    assert_eq!(
        created,
        Created {
            created: 0,
            existing: 1,
            replaced: 0
        }
    );
    assert_eq!(store.counts(&name).await.unwrap().by_status.pending, 1);
    let claimed = store
        .claim_next(&name, &ClaimNext::new("w", Duration::from_secs(30)), t)
        .await
        .unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.task.id.as_str()).collect();
    assert_eq!(ids, ["a"], "the re-created task is claimable");
}
