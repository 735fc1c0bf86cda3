//! Job records: settings and the user-set state.

use super::super::model::duration_ms;
use crate::error::{Error, Result};
use crate::model::{Job, JobName, JobSpec, JobStateChange, validate_key};
use crate::time::Timestamp;

/// Creates a job (from defaults) or updates the fields `spec` sets.
pub fn apply_job_spec(
    existing: Option<&Job>,
    name: &JobName,
    spec: &JobSpec,
    now: Timestamp,
) -> Result<Job> {
    check_job_spec(name, spec)?;
    let mut job = match existing {
        Some(j) => {
            let mut j = j.clone();
            j.version = bumped_job_version(&j)?;
            j.updated_at = now;
            j
        }
        None => Job::new(name.clone(), now),
    };
    if let Some(m) = &spec.metadata {
        job.metadata = m.clone();
    }
    if let Some(a) = spec.amount {
        job.amount = a;
    }
    if let Some(n) = spec.max_attempts {
        if n == 0 {
            return Err(Error::invalid("max_attempts must be at least 1"));
        }
        job.max_attempts = n;
    }
    if let Some(l) = spec.lease {
        super::check_lease_length(l)?;
        job.lease_ms = duration_ms(l);
    }
    if let Some(b) = spec.backoff {
        if b.max_ms < b.initial_ms {
            return Err(Error::invalid(
                "backoff maximum must not be below its initial delay",
            ));
        }
        job.backoff = b;
    }
    if let Some(stages) = &spec.stages {
        for (i, s) in stages.iter().enumerate() {
            validate_key("stage name", s)?;
            if stages[..i].contains(s) {
                return Err(Error::invalid(format!("stage {s:?} is listed twice")));
            }
        }
        job.stages = stages.clone();
    }
    if let Some(state) = spec.state {
        job.state = state;
    }
    Ok(job)
}

/// What [`apply_job_spec`] refuses in `spec` whatever the job's record: metadata nesting
/// deeper than [`super::MAX_JSON_DEPTH`] (a job record that could not be read back would make
/// every command of the job fail, its deletion included).
pub fn check_job_spec(name: &JobName, spec: &JobSpec) -> Result<()> {
    match &spec.metadata {
        Some(m) => super::check_json_depth(m, || format!("job {name}: metadata")),
        None => Ok(()),
    }
}

/// Moves the job's state; with `expected`, only from that state ([`Error::Conflict`] otherwise).
pub fn move_job_state(job: &Job, change: JobStateChange, now: Timestamp) -> Result<Job> {
    if let Some(expected) = change.expected
        && expected != job.state
    {
        return Err(Error::Conflict(format!(
            "job {} is {}, not {expected}",
            job.name, job.state
        )));
    }
    let mut j = job.clone();
    j.state = change.to;
    j.version = bumped_job_version(&j)?;
    j.updated_at = now;
    Ok(j)
}

/// A job record's version + 1; at the top of its range (a record edited by hand),
/// [`Error::Corrupt`] instead of a wrap back to a reused version.
fn bumped_job_version(job: &Job) -> Result<u64> {
    job.version.checked_add(1).ok_or_else(|| Error::Corrupt {
        location: format!("job {}", job.name),
        message: format!(
            "its version is at the largest value it can hold ({})",
            job.version
        ),
    })
}
