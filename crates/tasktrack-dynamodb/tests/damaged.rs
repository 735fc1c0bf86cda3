//! A task item damaged by hand (or by another tool) must not stop its job: every `claim_next`
//! would otherwise read it at the head of the claim index and fail with `Corrupt`. Claims go
//! past it, `get` still names it, and once it is repaired and rewritten through the store it is
//! claimable again.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use std::time::Duration;
use tasktrack_core::{
    ClaimNext, Claimed, CreateMode, ErrorKind, JobName, Store, TaskId, TaskKey, TaskQuery,
};
use tasktrack_dynamodb::{DynamoStore, Settings};

fn ids(claimed: &[Claimed]) -> Vec<String> {
    claimed.iter().map(|c| c.task.id.to_string()).collect()
}

/// Sets the `doc` attribute (the task as JSON) of task `id` of job `j` as stored, and answers
/// the one it held.
async fn swap_doc(store: &DynamoStore, url: &str, id: &str, doc: &str) -> String {
    let (client, _) = Settings::parse(url).unwrap().client().await.unwrap();
    let key = HashMap::from([
        ("pk".to_owned(), AttributeValue::S("t:j".into())),
        ("sk".to_owned(), AttributeValue::S(id.into())),
    ]);
    let old = client
        .update_item()
        .table_name(store.table())
        .set_key(Some(key))
        .update_expression("SET #d = :d")
        .condition_expression("attribute_exists(#d)")
        .expression_attribute_names("#d", "doc")
        .expression_attribute_values(":d", AttributeValue::S(doc.into()))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
        .send()
        .await
        .unwrap();
    let attributes = old.attributes.unwrap();
    attributes["doc"].as_s().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_go_past_a_damaged_task_item_until_it_is_repaired_and_rewritten() {
    let Some(url) = common::fresh_url_or_skip("&counter_shards=1") else {
        return;
    };
    let store = common::open_temporary(&url).await.unwrap();
    let job = JobName::new("j").unwrap();
    let t = common::now();
    let tasks = common::new_tasks(&["a", "b", "c"]);
    store
        .create(&job, &tasks, CreateMode::SkipExisting, t)
        .await
        .unwrap();
    let original = swap_doc(&store, &url, "a", "{ damaged").await;

    let claim = ClaimNext::new("w", Duration::from_secs(30));
    let first = store.claim_next(&job, &claim, t).await.unwrap();
    assert_eq!(ids(&first), ["b"], "a, first in claim order, is skipped");
    let a = TaskKey::new(job.clone(), TaskId::new("a").unwrap());
    let err = store.get(&a).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(r#"sk="a""#), "{err}");
    let second = store.claim_next(&job, &claim, t).await.unwrap();
    assert_eq!(ids(&second), ["c"]);
    assert!(store.claim_next(&job, &claim, t).await.unwrap().is_empty());

    // Repaired by hand, then rewritten through the store: claimable again.
    swap_doc(&store, &url, "a", &original).await;
    store
        .create(&job, &common::new_tasks(&["a"]), CreateMode::Replace, t)
        .await
        .unwrap();
    let again = store.claim_next(&job, &claim, t).await.unwrap();
    assert_eq!(ids(&again), ["a"]);
}

/// A task whose record reads but whose counters the claim rule refuses (its token edited to the
/// top of its range: a claim would have to wrap it) is passed over too, not the claim's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_go_past_a_task_whose_token_cannot_be_bumped() {
    let Some(url) = common::fresh_url_or_skip("&counter_shards=1") else {
        return;
    };
    let store = common::open_temporary(&url).await.unwrap();
    let job = JobName::new("j").unwrap();
    let t = common::now();
    let tasks = common::new_tasks(&["a", "b"]);
    store
        .create(&job, &tasks, CreateMode::SkipExisting, t)
        .await
        .unwrap();
    let original = swap_doc(&store, &url, "a", "{}").await;
    let mut edited: serde_json::Value = serde_json::from_str(&original).unwrap();
    edited["token"] = serde_json::json!(u64::MAX);
    swap_doc(&store, &url, "a", &edited.to_string()).await;

    // Another process, which has not seen the tasks before, claims them.
    let other = tasktrack_dynamodb::open(&url).await.unwrap();
    let claim = ClaimNext::new("w", Duration::from_secs(30));
    let first = other.claim_next(&job, &claim, t).await.unwrap();
    assert_eq!(ids(&first), ["b"], "a, first in claim order, is skipped");
    let a = TaskKey::new(job.clone(), TaskId::new("a").unwrap());
    assert_eq!(
        other.get(&a).await.unwrap().token,
        u64::MAX,
        "a is left as it is"
    );
}

/// `delete` removes a damaged task whatever its lease says, and its counters move with it (the
/// testkit's case; DESIGN.md, "A damaged task record does not stop its job"). The item is
/// damaged as above: its `doc` set to something that does not parse, its other attributes (the
/// status, the claim index's) left as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_task_can_be_deleted() {
    let Some(url) = common::fresh_url_or_skip("&counter_shards=1") else {
        return;
    };
    let store = common::open_temporary(&url).await.unwrap();
    let (client, _) = Settings::parse(&url).unwrap().client().await.unwrap();
    let table = store.table().to_owned();
    let h = tasktrack_core::testkit::Harness::new(
        std::sync::Arc::new(store),
        "a_damaged_task_can_be_deleted",
        1.0,
    );
    tasktrack_core::testkit::damaged::a_damaged_task_can_be_deleted(h, |key| {
        damage(client.clone(), table.clone(), key, &[("doc", "{ damaged")])
    })
    .await
    .unwrap();
}

/// A list names a damaged item in its page's `unreadable`, at the place its list sort key
/// (`lsk`) gives it, instead of failing the whole job's listing; `delete_job` removes it with
/// the job (the testkit's case; DESIGN.md, "A damaged task record does not stop its job").
/// Damaged as above: its `doc` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_task_is_named_by_lists_not_hiding_the_others() {
    named_by_lists(&[("doc", "{ damaged")]).await;
}

/// The same when the damaged item's list sort key does not read as a place either (edited by
/// hand as well): the key, as it is, still orders it in its partition's Queries, so it is named
/// once, on the page whose key range holds it (here the last page oldest first, the first
/// newest first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_task_whose_list_key_does_not_read_is_named_once() {
    named_by_lists(&[("doc", "{ damaged"), ("lsk", "edited by hand")]).await;
}

/// Runs the testkit's listing case with `edits` as the damage.
async fn named_by_lists(edits: &'static [(&'static str, &'static str)]) {
    let Some(url) = common::fresh_url_or_skip("&counter_shards=1") else {
        return;
    };
    let store = common::open_temporary(&url).await.unwrap();
    let (client, _) = Settings::parse(&url).unwrap().client().await.unwrap();
    let table = store.table().to_owned();
    let name = "a_damaged_task_is_named_by_lists_not_hiding_the_others";
    let h = tasktrack_core::testkit::Harness::new(std::sync::Arc::new(store), name, 1.0);
    tasktrack_core::testkit::damaged::a_damaged_task_is_named_by_lists_not_hiding_the_others(
        h,
        |key| damage(client.clone(), table.clone(), key, edits),
    )
    .await
    .unwrap();
}

/// The testkit's `damage` hand: sets the string attributes `edits` (name, value) of task
/// `key`'s item as a hand edit would, leaving the others as they were.
async fn damage(
    client: aws_sdk_dynamodb::Client,
    table: String,
    key: TaskKey,
    edits: &[(&str, &str)],
) {
    let item = HashMap::from([
        ("pk".to_owned(), AttributeValue::S(format!("t:{}", key.job))),
        ("sk".to_owned(), AttributeValue::S(key.id.to_string())),
    ]);
    let sets: Vec<String> = (0..edits.len()).map(|i| format!("#a{i} = :v{i}")).collect();
    let mut update = client
        .update_item()
        .table_name(table)
        .set_key(Some(item))
        .update_expression(format!("SET {}", sets.join(", ")))
        .condition_expression("attribute_exists(pk)");
    for (i, (name, value)) in edits.iter().enumerate() {
        update = update
            .expression_attribute_names(format!("#a{i}"), *name)
            .expression_attribute_values(format!(":v{i}"), AttributeValue::S((*value).into()));
    }
    update.send().await.unwrap();
}

/// A finished task's item has no claim attributes, so nothing but its record names its stage:
/// deleting it damaged takes its count from the one cell of its status that holds tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_finished_task_can_be_deleted_and_leaves_its_count() {
    let Some(url) = common::fresh_url_or_skip("&counter_shards=1") else {
        return;
    };
    let store = common::open_temporary(&url).await.unwrap();
    let job = JobName::new("j").unwrap();
    for lease in common::claimed(&store, &job, &["a", "b"]).await {
        store
            .succeed(&lease, serde_json::json!(1), common::now())
            .await
            .unwrap();
    }
    swap_doc(&store, &url, "a", "{ damaged").await;

    let a = TaskKey::new(job.clone(), TaskId::new("a").unwrap());
    store.delete(&a, common::now()).await.unwrap();
    assert_eq!(store.get(&a).await.unwrap_err().kind(), ErrorKind::NotFound);
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(
        (counts.known, counts.by_status.succeeded),
        (1, 1),
        "{counts:?}"
    );
}

/// A task item whose list sort key (`lsk`) alone was edited: its record reads, but every write
/// of it compares that key (so none could match), and lists order and bound it by the edited
/// text. It is damaged like one whose record does not read: lists name it once per walk and
/// list the others, and `delete_job` removes it (the testkit's case).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_list_key_alone_was_edited_is_named_by_lists() {
    named_by_lists(&[("lsk", "edited by hand")]).await;
}

/// The same task seen by `get` (`Corrupt`, naming the key), claims (they go past it) and
/// `delete` (it removes it, and its count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_list_key_alone_was_edited_is_corrupt_and_claims_go_past_it() {
    let Some(url) = common::fresh_url_or_skip("&counter_shards=1") else {
        return;
    };
    let store = common::open_temporary(&url).await.unwrap();
    let (client, _) = Settings::parse(&url).unwrap().client().await.unwrap();
    let job = JobName::new("j").unwrap();
    let t = common::now();
    let tasks = common::new_tasks(&["a", "b"]);
    store
        .create(&job, &tasks, CreateMode::SkipExisting, t)
        .await
        .unwrap();
    let a = common::key(&job, "a");
    damage(client, store.table().to_owned(), a.clone(), &[("lsk", "x")]).await;

    let err = store.get(&a).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("lsk"), "{err}");
    let claim = ClaimNext::new("w", Duration::from_secs(30)).with_limit(2);
    let claimed = store.claim_next(&job, &claim, t).await.unwrap();
    assert_eq!(ids(&claimed), ["b"], "a is skipped");
    store.delete(&a, t).await.unwrap();
    assert_eq!(store.get(&a).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(store.counts(&job).await.unwrap().known, 1);
}

/// A time filter cannot read the time of an item whose list sort key does not read as a
/// place, so it names the item rather than hide it, however its text sorts against the bound
/// (below every real key, above them): once per walk, in both orders, with either bound or
/// both, its record damaged or not; the other tasks are filtered by their time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_key_that_does_not_read_is_named_under_time_filters() {
    let Some(url) = common::fresh_url_or_skip("&counter_shards=1") else {
        return;
    };
    let store = common::open_temporary(&url).await.unwrap();
    let (client, _) = Settings::parse(&url).unwrap().client().await.unwrap();
    let mut case = 0;
    for lsk in ["edited by hand", "!", "12345"] {
        for with_doc in [false, true] {
            case += 1;
            let job = JobName::new(format!("j{case}")).unwrap();
            let mut edits = vec![("lsk", lsk)];
            if with_doc {
                edits.push(("doc", "{ damaged"));
            }
            timed_tasks(&store, &job).await;
            let (table, c) = (store.table().to_owned(), common::key(&job, "c"));
            damage(client.clone(), table, c, &edits).await;
            for (query, expected) in time_filtered(&job) {
                let (tasks, named) = walk(&store, query.clone()).await;
                let what = format!("lsk {lsk:?}, doc damaged: {with_doc}, {query:?}");
                assert_eq!(tasks, expected, "{what}");
                assert_eq!(named, ["c"], "{what}: the damaged task is named once");
            }
            // Its id still reads, so an id prefix still filters it.
            let query = TaskQuery {
                id_prefix: Some("b".into()),
                updated_before: Some(common::now().plus(Duration::from_secs(15))),
                ..TaskQuery::new(job.clone())
            };
            let (tasks, named) = walk(&store, query).await;
            assert_eq!((tasks, named), (vec!["b".to_owned()], vec![]), "{edits:?}");
        }
    }
}

/// `a` created at `now`, `b` and `c` 10 s later, `d` 20 s later.
async fn timed_tasks(store: &DynamoStore, job: &JobName) {
    for (ids, secs) in [(&["a"][..], 0), (&["b", "c"][..], 10), (&["d"][..], 20)] {
        let at = common::now().plus(Duration::from_secs(secs));
        store
            .create(job, &common::new_tasks(ids), CreateMode::SkipExisting, at)
            .await
            .unwrap();
    }
}

/// Time-filtered queries of [`timed_tasks`] (one task a page, so that walks take pages) and
/// the tasks each lists, in order (`c` left out: it is the damaged one).
fn time_filtered(job: &JobName) -> Vec<(TaskQuery, Vec<&'static str>)> {
    let at = |secs| common::now().plus(Duration::from_secs(secs));
    let base = TaskQuery::new(job.clone()).with_limit(1);
    let after = TaskQuery {
        updated_after: Some(at(5)),
        ..base.clone()
    };
    let before = TaskQuery {
        updated_before: Some(at(15)),
        ..base.clone()
    };
    let between = TaskQuery {
        updated_before: Some(at(15)),
        ..after.clone()
    };
    let mut cases = vec![(after, vec!["b", "d"]), (before, vec!["a", "b"])];
    cases.push((between, vec!["b"]));
    let newest: Vec<_> = cases
        .iter()
        .map(|(q, tasks)| {
            let q = TaskQuery {
                newest_first: true,
                ..q.clone()
            };
            (q, tasks.iter().rev().copied().collect())
        })
        .collect();
    cases.extend(newest);
    cases
}

/// Every page of `query`: the ids of the tasks, in order, and of the unreadable items named.
async fn walk(store: &DynamoStore, mut query: TaskQuery) -> (Vec<String>, Vec<String>) {
    let (mut tasks, mut named) = (Vec::new(), Vec::new());
    for _ in 0..50 {
        let page = store.list(&query).await.unwrap();
        tasks.extend(page.tasks.iter().map(|t| t.id.to_string()));
        named.extend(page.unreadable.iter().map(|u| u.id.to_string()));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return (tasks, named),
        }
    }
    panic!("{query:?}: the pages never end");
}
