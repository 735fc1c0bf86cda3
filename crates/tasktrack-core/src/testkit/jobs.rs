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

/// The job state index follows every move: set_job_state and put_job with a state take a job
/// out of its old state's list and into the new one's, a refused move (wrong expected state)
/// and a put_job without a state leave it where it is, and a deleted job is in no list.
/// `jobs` lists by name.
pub async fn job_state_index_follows_every_move(h: Harness) -> Result<()> {
    let a = JobName::new(format!("{}-a", h.job))?;
    let b = JobName::new(format!("{}-b", h.job))?;
    let started = JobSpec {
        state: Some(JobState::Started),
        ..Default::default()
    };
    h.store.put_job(&a, &started, h.now()).await?;
    h.store.put_job(&b, &started, h.now()).await?;
    let ours = |state: Option<JobState>| {
        let h = h.clone();
        let (a, b) = (a.clone(), b.clone());
        async move {
            let listed = h.store.jobs(state).await?;
            if let Some(s) = state {
                assert!(listed.iter().all(|j| j.state == s), "jobs({s})");
            }
            let names: Vec<&JobName> = listed.iter().map(|j| &j.name).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "jobs({state:?}) is ordered by name");
            Ok::<_, Error>(
                names
                    .into_iter()
                    .filter(|n| **n == a || **n == b)
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>(),
            )
        }
    };
    let (an, bn) = (a.to_string(), b.to_string());
    assert_eq!(
        ours(Some(JobState::Started)).await?,
        [an.as_str(), bn.as_str()]
    );

    let to = |to, expected| JobStateChange { to, expected };
    h.store
        .set_job_state(
            &a,
            to(JobState::Succeeded, Some(JobState::Started)),
            h.now(),
        )
        .await?;
    assert_eq!(ours(Some(JobState::Started)).await?, [bn.as_str()]);
    assert_eq!(ours(Some(JobState::Succeeded)).await?, [an.as_str()]);

    let refused = h
        .store
        .set_job_state(&a, to(JobState::Failed, Some(JobState::Started)), h.now())
        .await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    assert_eq!(ours(Some(JobState::Succeeded)).await?, [an.as_str()]);
    assert!(ours(Some(JobState::Failed)).await?.is_empty());

    let failed = JobSpec {
        state: Some(JobState::Failed),
        ..Default::default()
    };
    h.store.put_job(&b, &failed, h.now()).await?;
    assert!(ours(Some(JobState::Started)).await?.is_empty());
    assert_eq!(ours(Some(JobState::Failed)).await?, [bn.as_str()]);
    let metadata = JobSpec {
        metadata: Some(json!({"note": "no state given"})),
        ..Default::default()
    };
    h.store.put_job(&b, &metadata, h.now()).await?;
    h.store
        .create(
            &b,
            &[NewTask::new(tid("t"))],
            CreateMode::SkipExisting,
            h.now(),
        )
        .await?;
    assert_eq!(ours(Some(JobState::Failed)).await?, [bn.as_str()]);
    assert_eq!(h.store.get_job(&b).await?.state, JobState::Failed);

    h.store.delete_job(&a, h.now()).await?;
    assert!(ours(Some(JobState::Succeeded)).await?.is_empty());
    assert_eq!(ours(None).await?, [bn.as_str()]);
    Ok(())
}
