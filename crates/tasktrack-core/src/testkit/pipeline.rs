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
