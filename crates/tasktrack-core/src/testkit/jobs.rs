//! Conformance cases: job records and job state.

use super::*;
use serde_json::json;

/// put_job creates a job with defaults, then updates only the fields given.
pub async fn put_job_creates_then_updates_only_given_fields(h: Harness) -> Result<()> {
    let spec = JobSpec {
        metadata: Some(json!({"owner": "data-eng"})),
        amount: Some(Some(100)),
        ..Default::default()
    };
    let job = h.store.put_job(&h.job, &spec, h.now()).await?;
    assert_eq!(
        (job.max_attempts, job.lease(), job.state),
        (DEFAULT_MAX_ATTEMPTS, DEFAULT_LEASE, JobState::Pending)
    );
    h.advance(Duration::from_secs(1));
    let spec = JobSpec {
        max_attempts: Some(7),
        lease: Some(Duration::from_secs(90)),
        stages: Some(vec!["a".into(), "b".into()]),
        ..Default::default()
    };
    let job = h.store.put_job(&h.job, &spec, h.now()).await?;
    assert_eq!(
        (job.max_attempts, job.lease_ms, &job.metadata, job.amount),
        (7, 90_000, &json!({"owner": "data-eng"}), Some(100))
    );
    assert_eq!(
        (job.created_at, job.updated_at),
        (h.now().minus(Duration::from_secs(1)), h.now())
    );
    assert_eq!(h.store.get_job(&h.job).await?, job);
    let bad = JobSpec {
        max_attempts: Some(0),
        ..Default::default()
    };
    assert!(matches!(
        h.store.put_job(&h.job, &bad, h.now()).await,
        Err(Error::InvalidInput(_))
    ));
    let bad = JobSpec {
        stages: Some(vec!["x".into(), "x".into()]),
        ..Default::default()
    };
    assert!(matches!(
        h.store.put_job(&h.job, &bad, h.now()).await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(
        h.store.get_job(&h.job).await?,
        job,
        "a rejected update writes nothing"
    );
    Ok(())
}

/// jobs(state) returns exactly the jobs in that state.
pub async fn jobs_are_listed_by_state(h: Harness) -> Result<()> {
    let started = JobName::new(format!("{}-started", h.job))?;
    let revoked = JobName::new(format!("{}-revoked", h.job))?;
    h.store
        .put_job(
            &started,
            &JobSpec {
                state: Some(JobState::Started),
                ..Default::default()
            },
            h.now(),
        )
        .await?;
    h.store
        .put_job(
            &revoked,
            &JobSpec {
                state: Some(JobState::Revoked),
                ..Default::default()
            },
            h.now(),
        )
        .await?;
    let in_state = |jobs: Vec<Job>, name: &JobName| jobs.iter().any(|j| &j.name == name);
    let jobs = h.store.jobs(Some(JobState::Started)).await?;
    assert!(jobs.iter().all(|j| j.state == JobState::Started));
    assert!(in_state(jobs.clone(), &started) && !in_state(jobs, &revoked));
    let all = h.store.jobs(None).await?;
    assert!(in_state(all.clone(), &started) && in_state(all, &revoked));
    Ok(())
}

/// A job's state moves atomically; with an expected state, only from that state.
pub async fn job_state_moves_atomically_with_an_expected_state(h: Harness) -> Result<()> {
    h.set_job(JobSpec::default()).await?;
    let start = JobStateChange {
        to: JobState::Started,
        expected: Some(JobState::Pending),
    };
    let job = h.store.set_job_state(&h.job, start, h.now()).await?;
    assert_eq!(job.state, JobState::Started);
    let again = h.store.set_job_state(&h.job, start, h.now()).await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    let done = JobStateChange {
        to: JobState::Succeeded,
        expected: None,
    };
    assert_eq!(
        h.store.set_job_state(&h.job, done, h.now()).await?.state,
        JobState::Succeeded
    );
    let missing = JobName::new(format!("{}-missing", h.job))?;
    assert!(matches!(
        h.store.set_job_state(&missing, done, h.now()).await,
        Err(Error::NotFound(_))
    ));
    Ok(())
}

/// Getting a job that does not exist is NotFound; adding tasks creates the job record.
pub async fn get_of_a_missing_job_is_not_found(h: Harness) -> Result<()> {
    assert!(matches!(
        h.store.get_job(&h.job).await,
        Err(Error::NotFound(_))
    ));
    h.add(&["a"]).await?;
    assert_eq!(
        h.store.get_job(&h.job).await?.max_attempts,
        DEFAULT_MAX_ATTEMPTS
    );
    Ok(())
}
