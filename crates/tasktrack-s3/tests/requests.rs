//! The cost model, measured: requests per operation (printed, and bounded by assertions so that
//! a change that adds requests fails here).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use std::time::{Duration, Instant};
use tasktrack_core::{
    ClaimNext, CreateMode, JobName, NewTask, Store, TaskId, TaskKey, TaskQuery, Timestamp,
};
use tasktrack_s3::RequestCounts;

const LEASE: Duration = Duration::from_secs(300);

fn line(what: &str, per: u64, d: RequestCounts) -> String {
    let per = per.max(1) as f64;
    format!(
        "{what:<44} {:>6.2} requests (GET {:.2}, PUT {:.2}, DELETE {:.2}, LIST {:.2})",
        d.total() as f64 / per,
        d.get as f64 / per,
        d.put as f64 / per,
        d.delete as f64 / per,
        d.list as f64 / per
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_per_operation_one_worker() {
    let Some(store) = common::fresh("requests").await else {
        return;
    };
    let job = JobName::new("cost").unwrap();
    let n = 200u64;
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| NewTask::new(TaskId::new(format!("t{i:04}")).unwrap()))
        .collect();
    let mut report = Vec::new();

    let before = store.requests();
    store
        .create(&job, &tasks, CreateMode::SkipExisting, Timestamp::now())
        .await
        .unwrap();
    let create = store.requests().since(&before);
    report.push(line("create (bulk of 200), per task", n, create));

    let (mut claim, mut succeed) = (RequestCounts::default(), RequestCounts::default());
    let started = Instant::now();
    for _ in 0..n {
        let b = store.requests();
        let c = store
            .claim_next(&job, &ClaimNext::new("w", LEASE), Timestamp::now())
            .await
            .unwrap();
        let m = store.requests();
        store
            .succeed(&c[0].lease, serde_json::json!(null), Timestamp::now())
            .await
            .unwrap();
        let a = store.requests();
        claim = add(claim, m.since(&b));
        succeed = add(succeed, a.since(&m));
    }
    let drain = started.elapsed();
    report.push(line("claim_next (task created by this process)", n, claim));
    report.push(line("succeed", n, succeed));

    let b = store.requests();
    store.counts(&job).await.unwrap();
    report.push(line("counts", 1, store.requests().since(&b)));

    let b = store.requests();
    store
        .list(&TaskQuery::new(job.clone()).with_limit(50))
        .await
        .unwrap();
    report.push(line("list, page of 50", 1, store.requests().since(&b)));

    // A second process's view: tasks it did not create or see.
    let other = common::open(store.url()).await.unwrap();
    let more: Vec<NewTask> = (0..20)
        .map(|i| NewTask::new(TaskId::new(format!("u{i:04}")).unwrap()))
        .collect();
    store
        .create(&job, &more, CreateMode::SkipExisting, Timestamp::now())
        .await
        .unwrap();
    let b = other.requests();
    for _ in 0..20 {
        let c = other
            .claim_next(&job, &ClaimNext::new("o", LEASE), Timestamp::now())
            .await
            .unwrap();
        other
            .succeed(&c[0].lease, serde_json::json!(null), Timestamp::now())
            .await
            .unwrap();
    }
    report.push(line(
        "claim_next + succeed (task created elsewhere)",
        20,
        other.requests().since(&b),
    ));

    let key = TaskKey::new(job.clone(), TaskId::new("t0000").unwrap());
    let b = other.requests();
    other.get(&key).await.unwrap();
    report.push(line("get", 1, other.requests().since(&b)));

    println!(
        "one worker, moto, {n} tasks drained in {:.2}s ({:.0} tasks/s)",
        drain.as_secs_f64(),
        n as f64 / drain.as_secs_f64()
    );
    for l in &report {
        println!("{l}");
    }
    let per_task = (create.total() + claim.total() + succeed.total()) as f64 / n as f64;
    println!("create + claim_next + succeed: {per_task:.2} requests per task");
    assert!(
        per_task <= 4.2,
        "a task costs {per_task:.2} requests; the old trackers needed 3-4"
    );
}

fn add(a: RequestCounts, b: RequestCounts) -> RequestCounts {
    RequestCounts {
        get: a.get + b.get,
        get_index: a.get_index + b.get_index,
        put: a.put + b.put,
        delete: a.delete + b.delete,
        list: a.list + b.list,
    }
}
