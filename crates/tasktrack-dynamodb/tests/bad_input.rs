//! Input that AWS would refuse for a whole transaction, on moto: a task too large for a
//! DynamoDB item (400 KB) fails alone, with an error that names it, and the writes that would
//! have shared its transaction go on (a `create` holding one refuses the whole call, as for any
//! invalid task); an id given twice in one `create` (two puts of one item) is created once, and
//! the call reports what the memory store reports.

#![allow(clippy::unwrap_used)]

mod common;

use common::{claimed, invalid_input, key, new_tasks, now, succeed_many_abc};

use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use tasktrack_core::*;
use tasktrack_dynamodb::DynamoStore;

/// A store on a fresh table, or `None` (SKIPPED without moto; a failure under `CI=true`).
async fn store() -> Option<DynamoStore> {
    common::fresh_store().await
}

/// 500 KB of JSON: more than one DynamoDB item holds, less than the CLI keeps of stdout.
fn too_large() -> Value {
    Value::String("x".repeat(500 * 1024))
}

fn assert_too_large(result: &Result<impl std::fmt::Debug>, key: &str) {
    let m = invalid_input(result, key);
    assert!(m.contains(key), "names the task {key}: {m}");
    assert!(m.contains("409600 bytes"), "states the limit: {m}");
    assert!(
        m.contains("its output 512002 bytes"),
        "says what is large: {m}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn one_oversize_succeed_fails_alone_among_concurrent_succeeds() {
    let Some(store) = store().await else { return };
    let job = JobName::new("big").unwrap();
    let leases = claimed(&store, &job, &["a", "b", "c", "d"]).await;
    let requests = store.documents().requests();
    let before = requests.transact.load(Ordering::Relaxed);

    // Polled in order on one thread: `a` sends alone, the others queue behind it and share the
    // next transaction — which, without the size check, `c` would cancel for all of them.
    let succeed = |i: usize, output: Value| store.succeed(&leases[i], output, now());
    let results = tokio::join!(
        succeed(0, json!({"n": 0})),
        succeed(1, json!({"n": 1})),
        succeed(2, too_large()),
        succeed(3, json!({"n": 3})),
    );
    let results = [results.0, results.1, results.2, results.3];

    assert_too_large(&results[2], "big/c");
    for i in [0, 1, 3] {
        let task = results[i].as_ref().unwrap();
        assert_eq!(task.status, Status::Succeeded, "{}", task.id);
        assert_eq!(
            store.get(&leases[i].key).await.unwrap().output,
            Some(json!({"n": i}))
        );
    }
    assert_eq!(
        requests.transact.load(Ordering::Relaxed) - before,
        2,
        "a alone, then b and d together"
    );

    // Nothing was written for `c`: its holder still holds it and can record the failure.
    let c = store.get(&leases[2].key).await.unwrap();
    assert_eq!((c.status, &c.output), (Status::InProgress, &None));
    let fail = Fail::new(Failure::new("output_too_large", "the output does not fit"));
    let failed = store.fail(&leases[2], &fail, now()).await.unwrap();
    assert_eq!(failed.status, Status::Failed);
    let counts = store.counts(&job).await.unwrap().by_status;
    assert_eq!((counts.succeeded, counts.failed), (3, 1));
}

#[tokio::test(flavor = "current_thread")]
async fn succeed_many_answers_an_oversize_output_alone() {
    let Some(store) = store().await else { return };
    let job = JobName::new("big").unwrap();
    let (_, results) = succeed_many_abc(&store, &job, too_large()).await;
    assert_eq!(results.len(), 3);
    assert_too_large(&results[1], "big/b");
    for i in [0, 2] {
        assert_eq!(results[i].as_ref().unwrap().status, Status::Succeeded);
    }
    let counts = store.counts(&job).await.unwrap().by_status;
    assert_eq!((counts.succeeded, counts.in_progress), (2, 1));
}

#[tokio::test(flavor = "current_thread")]
async fn create_with_an_oversize_task_writes_nothing_and_names_it() {
    let Some(store) = store().await else { return };
    let job = JobName::new("big").unwrap();
    let mut tasks = new_tasks(&["t0", "t1", "t2", "t3", "t4", "t5"]);
    tasks[3] = tasks[3].clone().with_data(too_large());
    store
        .create(&job, &new_tasks(&["t1"]), CreateMode::SkipExisting, now())
        .await
        .unwrap();

    let refused = store
        .create(&job, &tasks, CreateMode::SkipExisting, now())
        .await;
    let m = invalid_input(&refused, "big/t3");
    assert!(m.contains("big/t3"), "names the task: {m}");
    assert!(
        m.contains("its JSON data is 512002 bytes"),
        "says what is large: {m}"
    );
    assert!(m.contains("409600 bytes"), "states the limit: {m}");

    // As for any refused create, nothing of the call is written.
    for id in ["t0", "t2", "t3", "t4", "t5"] {
        assert!(
            matches!(store.get(&key(&job, id)).await, Err(Error::NotFound(_))),
            "{id}"
        );
    }
    assert_eq!(store.counts(&job).await.unwrap().by_status.pending, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn an_id_given_twice_in_one_create_is_created_once_as_the_memory_store_does() {
    let Some(store) = store().await else { return };
    let memory = MemoryStore::in_memory();
    let job = JobName::new("dup").unwrap();
    let task = |id: &str, n: u32| NewTask::new(TaskId::new(id).unwrap()).with_data(json!({"n": n}));
    let calls = [
        (
            CreateMode::SkipExisting,
            vec![task("a", 1), task("b", 1), task("a", 2)],
            Created {
                created: 2,
                existing: 1,
                replaced: 0,
            },
        ),
        (
            CreateMode::Replace,
            vec![task("c", 1), task("c", 2), task("d", 1), task("c", 3)],
            Created {
                created: 2,
                existing: 0,
                replaced: 2,
            },
        ),
    ];
    for (mode, tasks, expected) in calls {
        let ours = store.create(&job, &tasks, mode, now()).await.unwrap();
        let reference = memory.create(&job, &tasks, mode, now()).await.unwrap();
        assert_eq!(ours, reference, "{mode:?}: as the memory store");
        assert_eq!(ours, expected, "{mode:?}");
    }
    // `a` as first given; `c` replaced by each later occurrence, in order.
    for (id, data) in [("a", 1), ("b", 1), ("c", 3), ("d", 1)] {
        let key = key(&job, id);
        let (ours, reference) = (
            store.get(&key).await.unwrap(),
            memory.get(&key).await.unwrap(),
        );
        assert_eq!(ours.data, json!({"n": data}), "{id}");
        assert_eq!(
            (ours.status, ours.version, &ours.data),
            (reference.status, reference.version, &reference.data),
            "{id}: as the memory store"
        );
    }
    let counts = store.counts(&job).await.unwrap().by_status;
    assert_eq!(counts.pending, 4, "each task counted once");
    assert_eq!(counts, memory.counts(&job).await.unwrap().by_status);
}

/// The core's generic `cas::create` over `DynamoDocuments` (what a caller composing the document
/// layer gets): a task too large for an item refuses the whole call before anything is written,
/// as `DynamoStore::create` does and every backend guarantees (`Documents::check_new_tasks`).
#[tokio::test(flavor = "current_thread")]
async fn cas_create_over_the_documents_with_an_oversize_task_writes_nothing() {
    let Some(store) = store().await else { return };
    let docs = store.documents();
    let job = JobName::new("big").unwrap();
    let mut tasks = new_tasks(&["t0", "t1", "t2"]);
    tasks[1] = tasks[1].clone().with_data(too_large());

    let refused = cas::create(docs, &job, &tasks, CreateMode::SkipExisting, now()).await;
    let m = invalid_input(&refused, "big/t1");
    assert!(m.contains("big/t1"), "names the task: {m}");
    assert!(m.contains("409600 bytes"), "states the limit: {m}");
    for id in ["t0", "t1", "t2"] {
        assert!(
            matches!(store.get(&key(&job, id)).await, Err(Error::NotFound(_))),
            "{id} not written"
        );
    }
    assert_eq!(store.counts(&job).await.unwrap().by_status.total(), 0);

    // The rule of the store's own writes: data must leave 2 KB of the item free.
    let reserve = 409_600 - tasktrack_dynamodb::RESERVED_BYTES;
    let sized = |id: &str, bytes: usize| {
        NewTask::new(TaskId::new(id).unwrap()).with_data(Value::String("x".repeat(bytes)))
    };
    let refused = cas::create(
        docs,
        &job,
        &[sized("small", 1_000), sized("over", reserve)],
        CreateMode::SkipExisting,
        now(),
    )
    .await;
    assert!(
        matches!(&refused, Err(Error::InvalidInput(m)) if m.contains("big/over")),
        "{refused:?}"
    );
    assert_eq!(store.counts(&job).await.unwrap().by_status.total(), 0);
    let small = [sized("small", 1_000)];
    let created = cas::create(docs, &job, &small, CreateMode::SkipExisting, now())
        .await
        .unwrap();
    assert_eq!(created.created, 1);
}
