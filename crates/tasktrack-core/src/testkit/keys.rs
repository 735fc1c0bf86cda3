//! Conformance cases: key isolation and awkward keys.

use super::*;
use serde_json::json;

/// Jobs `a`, `a-b`, `a/b` and `a_` never see each other's tasks, whatever the key layout.
pub async fn jobs_sharing_a_prefix_never_see_each_others_tasks(h: Harness) -> Result<()> {
    let names = [
        h.job.to_string(),
        format!("{}-b", h.job),
        format!("{}/b", h.job),
        format!("{}_", h.job),
    ];
    let jobs: Vec<JobName> = names
        .iter()
        .map(|n| JobName::new(n.as_str()))
        .collect::<Result<_>>()?;
    for (i, job) in jobs.iter().enumerate() {
        let tasks: Vec<NewTask> = (0..=i)
            .map(|n| NewTask::new(tid(&format!("t{n}"))))
            .collect();
        h.store
            .create(job, &tasks, CreateMode::SkipExisting, h.now())
            .await?;
    }
    for (i, job) in jobs.iter().enumerate() {
        let counts = h.store.counts(job).await?;
        assert_eq!(counts.known, i as u64 + 1, "counts of {job}");
        let listed = h.store.list(&TaskQuery::new(job.clone())).await?;
        assert!(listed.tasks.iter().all(|t| &t.job == job), "list of {job}");
        assert_eq!(listed.tasks.len(), i + 1, "list of {job}");
    }
    let req = ClaimNext::new("w", LEASE).with_limit(100);
    let claimed = h.store.claim_next(&jobs[0], &req, h.now()).await?;
    assert_eq!(claimed.len(), 1, "claim_next stays in its job");
    assert_eq!(h.store.counts(&jobs[1]).await?.by_status.pending, 2);
    Ok(())
}

/// Ids with path separators, dots, percent signs, case variants, unicode normalisation variants
/// and the maximum length are distinct tasks that round-trip unchanged.
pub async fn awkward_keys_round_trip_unchanged(h: Harness) -> Result<()> {
    let long = "x".repeat(MAX_KEY_BYTES);
    let ids = [
        "../../etc/passwd",
        "a/b",
        "a\\b",
        "%2F",
        "100%",
        ".",
        "..",
        "A",
        "a",
        "caf\u{e9}",
        "cafe\u{301}",
        " spaced ",
        "emoji \u{1f680}",
        "colon:semi;",
        "*?<>|\"'",
        long.as_str(),
    ];
    let tasks: Vec<NewTask> = ids
        .iter()
        .map(|id| NewTask::new(tid(id)).with_data(json!({ "id": id })))
        .collect();
    let created = h
        .store
        .create(&h.job, &tasks, CreateMode::SkipExisting, h.now())
        .await?;
    assert_eq!(
        created.created,
        ids.len() as u64,
        "every id is a distinct task"
    );
    for id in ids {
        let t = h.get(id).await?;
        assert_eq!((t.id.as_str(), &t.data), (id, &json!({ "id": id })));
    }
    let page = h
        .store
        .list(&TaskQuery::new(h.job.clone()).with_limit(100))
        .await?;
    assert_eq!(page.tasks.len(), ids.len());
    let c = h.claim("../../etc/passwd", "w").await?;
    h.store.succeed(&c.lease, json!(1), h.now()).await?;
    assert!(
        TaskId::new("a\u{0}b").is_err() && JobName::new("").is_err(),
        "invalid keys never reach a store"
    );
    Ok(())
}

/// Purge and delete_job stay inside the job they name, whatever the other jobs' names share
/// with it: a prefix (`a`, `a-b`, `a/b`, `a_`), or characters that are patterns to some store
/// (`%`, `*`, `?`, `[`). After each one, every other job still has all its tasks and its record.
pub async fn purge_and_delete_job_stay_inside_their_job(h: Harness) -> Result<()> {
    let names = [
        h.job.to_string(),
        format!("{}-b", h.job),
        format!("{}/b", h.job),
        format!("{}_", h.job),
        format!("{}%", h.job),
        format!("{}*", h.job),
        format!("{}?", h.job),
        format!("{}[-]", h.job),
    ];
    let jobs: Vec<JobName> = names
        .iter()
        .map(|n| JobName::new(n.as_str()))
        .collect::<Result<_>>()?;
    let tasks = [NewTask::new(tid("done")), NewTask::new(tid("todo"))];
    for job in &jobs {
        h.store
            .create(job, &tasks, CreateMode::SkipExisting, h.now())
            .await?;
        let req = ClaimNext::new("w", LEASE).with_limit(1);
        for c in h.store.claim_next(job, &req, h.now()).await? {
            h.store.succeed(&c.lease, json!(1), h.now()).await?;
        }
    }
    // Each job's known tasks; `None` once its record is gone.
    let mut known: Vec<Option<u64>> = vec![Some(2); jobs.len()];
    let check = |known: Vec<Option<u64>>, after: String| {
        let h = h.clone();
        let jobs = jobs.clone();
        async move {
            for (job, want) in jobs.iter().zip(known) {
                let counts = h.store.counts(job).await?;
                assert_eq!(
                    (counts.exists, counts.known),
                    (want.is_some(), want.unwrap_or(0)),
                    "{job} after {after}"
                );
                let listed = h.store.list(&TaskQuery::new(job.clone())).await?;
                assert_eq!(
                    listed.tasks.len() as u64,
                    want.unwrap_or(0),
                    "{job} after {after}"
                );
                assert_eq!(h.store.get_job(job).await.is_ok(), want.is_some(), "{job}");
            }
            Ok::<_, Error>(())
        }
    };
    let cutoff = h.now().plus(Duration::from_millis(1));
    for (i, job) in jobs.iter().enumerate().rev() {
        let purge = Purge {
            job: Some(job.clone()),
            statuses: vec![Status::Succeeded],
            older_than: cutoff,
        };
        assert_eq!(h.store.purge(&purge).await?, 1, "purge of {job}");
        known[i] = Some(1);
        check(known.clone(), format!("the purge of {job}")).await?;
    }
    for (i, job) in jobs.iter().enumerate() {
        let d = h.store.delete_job(job, h.now()).await?;
        assert_eq!(
            (d.tasks, d.kept_leased, d.job_removed),
            (1, 0, true),
            "{job}"
        );
        known[i] = None;
        check(known.clone(), format!("the deletion of {job}")).await?;
    }
    Ok(())
}
