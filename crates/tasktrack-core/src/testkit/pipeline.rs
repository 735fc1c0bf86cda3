//! Conformance cases: pipeline stages.

use super::*;
use serde_json::json;

async fn staged(h: &Harness) -> Result<()> {
    let stages = ["extract", "transform", "load"].map(String::from).to_vec();
    h.set_job(JobSpec {
        stages: Some(stages),
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Success at a stage makes the task pending at the next one with attempts reset; only the last
/// stage's success finishes it.
pub async fn pipeline_success_advances_the_stage_and_resets_attempts(h: Harness) -> Result<()> {
    staged(&h).await?;
    h.add(&["a"]).await?;
    assert_eq!(h.get("a").await?.stage.as_deref(), Some("extract"));
    let c = h.claim("a", "w").await?;
    h.fail_now(&c.lease, "flaky").await?;
    let c = h.claim("a", "w").await?;
    assert_eq!(c.task.attempts, 2);
    let t = h
        .store
        .succeed(&c.lease, json!({"extracted": 1}), h.now())
        .await?;
    assert_eq!(
        (t.status, t.stage.as_deref(), t.attempts),
        (Status::Pending, Some("transform"), 0)
    );
    let c = h.claim("a", "w").await?;
    let t = h.store.succeed(&c.lease, json!(2), h.now()).await?;
    assert_eq!(t.stage.as_deref(), Some("load"));
    let c = h.claim("a", "w").await?;
    let t = h.store.succeed(&c.lease, json!("loaded"), h.now()).await?;
    assert_eq!(
        (t.status, t.stage.as_deref(), &t.output),
        (Status::Succeeded, Some("load"), &Some(json!("loaded")))
    );
    let stages: Vec<Option<&str>> = t.history.iter().map(|a| a.stage.as_deref()).collect();
    assert_eq!(
        stages,
        [
            Some("extract"),
            Some("extract"),
            Some("transform"),
            Some("load")
        ]
    );
    Ok(())
}

/// Failing at a stage retries that stage only; retry after exhaustion resumes at that stage.
pub async fn pipeline_failure_retries_only_the_current_stage(h: Harness) -> Result<()> {
    staged(&h).await?;
    h.add(&["a"]).await?;
    let c = h.claim("a", "w").await?;
    h.store.succeed(&c.lease, json!(1), h.now()).await?;
    let c = h.claim("a", "w").await?;
    let fatal = Fail {
        retryable: false,
        ..Fail::new(Failure::new("x", "bad"))
    };
    let t = h.store.fail(&c.lease, &fatal, h.now()).await?;
    assert_eq!(
        (t.status, t.stage.as_deref()),
        (Status::Exhausted, Some("transform"))
    );
    let t = h
        .store
        .retry(&h.key("a"), &Retry::default(), h.now())
        .await?;
    assert_eq!(
        (t.status, t.stage.as_deref(), t.attempts),
        (Status::Pending, Some("transform"), 0)
    );
    Ok(())
}

/// Workers claim by stage, and counts are reported per stage and status.
pub async fn claim_next_by_stage_and_counts_per_stage(h: Harness) -> Result<()> {
    staged(&h).await?;
    h.add(&["a", "b", "c"]).await?;
    let c = h.claim("a", "w").await?;
    h.store.succeed(&c.lease, json!(1), h.now()).await?;
    let req = ClaimNext::new("w", LEASE)
        .with_limit(10)
        .at_stage("transform");
    let got = h.store.claim_next(&h.job, &req, h.now()).await?;
    assert_eq!(
        got.iter().map(|c| c.task.id.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    let counts = h.store.counts(&h.job).await?;
    let extract = counts.by_stage.get("extract").copied().unwrap_or_default();
    let transform = counts
        .by_stage
        .get("transform")
        .copied()
        .unwrap_or_default();
    assert_eq!(
        (
            extract.pending,
            transform.in_progress,
            counts.by_status.pending
        ),
        (2, 1, 2)
    );
    let none = ClaimNext::new("w", LEASE).with_limit(10).at_stage("load");
    assert!(h.store.claim_next(&h.job, &none, h.now()).await?.is_empty());
    Ok(())
}

fn ids_of(claimed: &[Claimed]) -> Vec<&str> {
    claimed.iter().map(|c| c.task.id.as_str()).collect()
}

/// Each stage's success clears the last error (it stays in history) and replaces the output;
/// data checkpoints carry over to the next stage; a task waiting at a later stage is never
/// offered to a claim of an earlier one (finished stages are not redone), and lists and counts
/// see it at its current stage.
pub async fn pipeline_stage_success_clears_the_error_and_replaces_the_output(
    h: Harness,
) -> Result<()> {
    staged(&h).await?;
    h.add(&["a"]).await?;
    let at = |stage: &str| ClaimNext::new("w", LEASE).with_limit(5).at_stage(stage);
    let c = h.claim("a", "w").await?;
    h.store
        .patch_data(&c.lease, &json!({"checkpoint": 1}), h.now())
        .await?;
    let t = h.fail_now(&c.lease, "flaky extract").await?;
    assert_eq!(
        (t.status, t.stage.as_deref(), t.error.is_some()),
        (Status::Failed, Some("extract"), true)
    );
    let c = h.claim("a", "w").await?;
    let t = h
        .store
        .succeed(&c.lease, json!({"extracted": 1}), h.now())
        .await?;
    assert_eq!(
        (t.status, t.stage.as_deref(), &t.error, &t.output),
        (
            Status::Pending,
            Some("transform"),
            &None,
            &Some(json!({"extracted": 1}))
        )
    );
    assert_eq!(t.data, json!({"checkpoint": 1}));
    assert_eq!(
        t.history
            .first()
            .and_then(|a| a.error.as_ref())
            .map(|e| e.message.as_str()),
        Some("flaky extract"),
        "the error stays in history"
    );
    let q = TaskQuery {
        stage: Some("transform".into()),
        ..TaskQuery::new(h.job.clone())
    };
    let listed = h.store.list(&q).await?;
    assert_eq!(ids(&listed), ["a"], "listed at its current stage");

    let claimed = h
        .store
        .claim_next(&h.job, &at("transform"), h.now())
        .await?;
    assert_eq!(ids_of(&claimed), ["a"]);
    let t = h.fail_now(&claimed[0].lease, "flaky transform").await?;
    assert_eq!(
        (t.status, t.stage.as_deref(), &t.output),
        (
            Status::Failed,
            Some("transform"),
            &Some(json!({"extracted": 1}))
        ),
        "a failure keeps the last stage's output"
    );
    assert!(
        h.store
            .claim_next(&h.job, &at("extract"), h.now())
            .await?
            .is_empty(),
        "a finished stage is never redone"
    );
    let claimed = h
        .store
        .claim_next(&h.job, &at("transform"), h.now())
        .await?;
    assert_eq!(ids_of(&claimed), ["a"]);
    assert_eq!(claimed[0].task.attempts, 2);
    let t = h
        .store
        .succeed(&claimed[0].lease, json!({"transformed": 2}), h.now())
        .await?;
    assert_eq!(
        (t.stage.as_deref(), &t.error, &t.output),
        (Some("load"), &None, &Some(json!({"transformed": 2})))
    );
    let c = h.claim("a", "w").await?;
    let t = h.store.succeed(&c.lease, json!("loaded"), h.now()).await?;
    assert_eq!(
        (t.status, t.stage.as_deref(), &t.output),
        (Status::Succeeded, Some("load"), &Some(json!("loaded")))
    );
    let counts = h.store.counts(&h.job).await?;
    let load = counts.by_stage.get("load").copied().unwrap_or_default();
    assert_eq!((load.succeeded, load.total()), (1, 1));
    assert_eq!(counts.by_status.succeeded, 1);
    for stage in ["extract", "transform"] {
        assert_eq!(
            counts.by_stage.get(stage).map_or(0, StatusCounts::total),
            0,
            "{stage}"
        );
    }
    Ok(())
}

/// A task's pipeline is fixed when it is created: a later change of the job's stages applies
/// to tasks created afterwards only. A succeeded pipeline task leaves `succeeded` only by a
/// forced retry, which starts it over at its first stage.
pub async fn a_pipeline_is_fixed_when_its_task_is_created(h: Harness) -> Result<()> {
    h.set_job(JobSpec {
        stages: Some(vec!["one".into(), "two".into()]),
        ..Default::default()
    })
    .await?;
    h.add(&["old"]).await?;
    h.set_job(JobSpec {
        stages: Some(vec!["x".into(), "y".into(), "z".into()]),
        ..Default::default()
    })
    .await?;
    h.add(&["new"]).await?;
    let old = h.get("old").await?;
    assert_eq!(
        (old.stage.as_deref(), old.stages.clone()),
        (Some("one"), vec!["one".to_string(), "two".to_string()])
    );
    let new = h.get("new").await?;
    assert_eq!((new.stage.as_deref(), new.stages.len()), (Some("x"), 3));
    let at = |stage: &str| ClaimNext::new("w", LEASE).with_limit(5).at_stage(stage);
    let got = h.store.claim_next(&h.job, &at("one"), h.now()).await?;
    assert_eq!(ids_of(&got), ["old"]);
    let t = h.store.succeed(&got[0].lease, json!(1), h.now()).await?;
    assert_eq!(
        (t.status, t.stage.as_deref()),
        (Status::Pending, Some("two"))
    );
    let c = h.claim("old", "w").await?;
    let t = h.store.succeed(&c.lease, json!(2), h.now()).await?;
    assert_eq!(
        (t.status, t.stage.as_deref()),
        (Status::Succeeded, Some("two"))
    );
    assert_refused(
        h.store
            .retry(&h.key("old"), &Retry::default(), h.now())
            .await,
        &Refusal::Succeeded,
    );
    let t = h
        .store
        .retry(&h.key("old"), &Retry { force: true }, h.now())
        .await?;
    assert_eq!(
        (t.status, t.stage.as_deref(), t.attempts),
        (Status::Pending, Some("one"), 0)
    );
    let got = h.store.claim_next(&h.job, &at("x"), h.now()).await?;
    assert_eq!(ids_of(&got), ["new"]);
    let got = h.store.claim_next(&h.job, &at("one"), h.now()).await?;
    assert_eq!(ids_of(&got), ["old"]);
    Ok(())
}
