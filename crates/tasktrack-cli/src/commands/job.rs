//! `job set`, `job show` and `jobs`.

use super::{Ctx, job_not_found};
use crate::args::{JobCommand, JobSetArgs, JobsArgs};
use crate::output::{bar, table, when};
use crate::parse;
use serde_json::json;
use tasktrack::{Counts, Error, Job, JobSpec, JobState, Result};

/// `job set` / `job show`.
pub async fn job(ctx: &Ctx, cmd: JobCommand) -> Result<u8> {
    let record = match cmd {
        JobCommand::Set(args) => {
            let name = parse::job(&args.job)?;
            let spec = spec(&args)?;
            ctx.store.put_job(&name, &spec, ctx.now()).await?
        }
        JobCommand::Show(args) => {
            let name = parse::job(&args.job)?;
            job_not_found(&name, ctx.store.get_job(&name).await)?
        }
    };
    ctx.out.emit(&record, || describe(&record))?;
    Ok(crate::exit::OK)
}

/// The fields the flags set; everything is validated before the store is touched.
fn spec(args: &JobSetArgs) -> Result<JobSpec> {
    let stages = match &args.stages {
        None => None,
        // `--stages ""`: no stages (not a pipeline).
        Some(s) if s.trim().is_empty() => Some(Vec::new()),
        Some(s) => {
            let stages: Vec<String> = s.split(',').map(|s| s.trim().to_string()).collect();
            if stages.iter().any(String::is_empty) {
                return Err(Error::invalid(format!(
                    "--stages {s:?} names an empty stage: give the names between commas"
                )));
            }
            for stage in &stages {
                tasktrack::validate_key("stage", stage)?;
            }
            Some(stages)
        }
    };
    if args.max_attempts == Some(0) {
        return Err(Error::invalid("--max-attempts must be at least 1"));
    }
    let amount = match args.amount.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(n) => Some(Some(n.parse::<u64>().map_err(|_| {
            Error::invalid(format!("--amount {n:?} is not a count (or `none`)"))
        })?)),
    };
    Ok(JobSpec {
        metadata: args
            .meta
            .as_deref()
            .map(|m| parse::json("meta", m))
            .transpose()?,
        amount,
        max_attempts: args.max_attempts,
        lease: args.lease.as_deref().map(parse::lease).transpose()?,
        backoff: args.backoff.as_deref().map(parse::backoff).transpose()?,
        stages,
        state: args
            .state
            .as_deref()
            .map(str::parse::<JobState>)
            .transpose()?,
    })
}

fn describe(job: &Job) -> String {
    let amount = job.amount.map_or("-".to_string(), |a| a.to_string());
    let stages = if job.stages.is_empty() {
        "-".to_string()
    } else {
        job.stages.join(" → ")
    };
    let backoff = if job.backoff.max_ms == 0 {
        "none".to_string()
    } else {
        format!(
            "{}..{}{}",
            humantime::format_duration(std::time::Duration::from_millis(job.backoff.initial_ms)),
            humantime::format_duration(std::time::Duration::from_millis(job.backoff.max_ms)),
            if job.backoff.jitter { " (jitter)" } else { "" }
        )
    };
    let mut t = table(&["job", job.name.as_str()]);
    t.add_row(vec!["state".to_string(), job.state.to_string()]);
    t.add_row(vec!["stages".to_string(), stages]);
    t.add_row(vec![
        "max attempts".to_string(),
        job.max_attempts.to_string(),
    ]);
    t.add_row(vec![
        "lease".to_string(),
        humantime::format_duration(job.lease()).to_string(),
    ]);
    t.add_row(vec!["backoff".to_string(), backoff]);
    t.add_row(vec!["amount".to_string(), amount]);
    t.add_row(vec!["metadata".to_string(), job.metadata.to_string()]);
    t.add_row(vec!["created".to_string(), when(Some(job.created_at))]);
    t.add_row(vec!["updated".to_string(), when(Some(job.updated_at))]);
    t.to_string()
}

/// `jobs [--state S]`: every job with its totals.
pub async fn jobs(ctx: &Ctx, args: JobsArgs) -> Result<u8> {
    let state = args
        .state
        .as_deref()
        .map(str::parse::<JobState>)
        .transpose()?;
    let jobs = ctx.store.jobs(state).await?;
    let mut rows: Vec<(Job, Counts)> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let counts = ctx.store.counts(&job.name).await?;
        rows.push((job, counts));
    }
    let doc: Vec<_> = rows
        .iter()
        .map(|(job, counts)| {
            json!({
                "job": job.name, "state": job.state, "total": counts.by_status.total(),
                "finished": counts.finished(), "counts": counts.by_status,
                "all_terminal": counts.all_terminal(), "has_failures": counts.has_failures(),
            })
        })
        .collect();
    ctx.out.emit(&doc, || {
        if rows.is_empty() {
            return "no jobs".to_string();
        }
        let mut t = table(&[
            "job",
            "state",
            "total",
            "succeeded",
            "failed",
            "exhausted",
            "running",
            "progress",
        ]);
        for (job, c) in &rows {
            let s = &c.by_status;
            t.add_row(vec![
                job.name.to_string(),
                job.state.to_string(),
                s.total().to_string(),
                s.succeeded.to_string(),
                s.failed.to_string(),
                s.exhausted.to_string(),
                s.in_progress.to_string(),
                bar(c.finished(), s.total(), 20),
            ]);
        }
        t.to_string()
    })?;
    Ok(crate::exit::OK)
}
