//! One file per command; [`dispatch`] is the only place that knows them all.
//!
//! Every command takes the [`Ctx`] (store, output, clock) and its parsed arguments and returns
//! the exit code on success; errors travel up as [`tasktrack::Error`] and become exit codes in
//! [`crate::exit::code`].
//!
//! # A job that does not exist
//! A command that reads or changes one named job fails with [`no_such_job`] (exit 4) when the
//! job does not exist, so that a typo in a job name is not mistaken for an empty job: `list`,
//! `status JOB`, `show`, `retry`, `ignore`, `delete`, `purge JOB`, `export`, `job show`, and
//! `run` (with its own hint). Commands that create the job or wait for it keep working: `add`,
//! `report`, `job set`, `run --follow` / `--force`, `status JOB --watch`. The job is looked up
//! ([`ensure_job`]) only when the answer is empty: a command that found tasks pays nothing.

mod add;
mod admin;
mod completions;
mod export;
mod init;
mod job;
mod list;
mod report;
pub mod run;
mod show;
mod status;

use crate::args::Command;
use crate::output::Output;
use std::sync::Arc;
use tasktrack::{
    Clock, Counts, Error, ErrorKind, JobName, Result, Store, Timestamp, UnreadableTask,
};

pub use completions::completions;

/// What every command gets.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The opened store.
    pub store: Arc<dyn Store>,
    /// The URL it was opened from, password included: print it only through
    /// [`tasktrack::redact_url`].
    pub url: String,
    /// Where to write.
    pub out: Output,
    /// Where `now` comes from.
    pub clock: Arc<dyn Clock>,
}

impl Ctx {
    /// The current instant from the context's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// The error of a command given a job that does not exist (not found, exit 4).
pub fn no_such_job(job: &JobName) -> Error {
    Error::NotFound(format!(
        "job {job:?} does not exist (`tasktrack jobs` lists the jobs)"
    ))
}

/// Whether these counts are those of a job that does not exist: no record and no task. (A
/// task always comes with its job's record; counting its tasks too keeps a job that has any
/// from ever being called missing.)
pub fn is_missing(counts: &Counts) -> bool {
    !counts.exists && counts.known == 0
}

/// `Ok` when the job exists, [`no_such_job`] when it does not. Call it only when a command's
/// answer is empty (no task listed, exported, purged or changed), so that the common path, a
/// job with tasks, costs no extra store call; the look-up is one [`Store::counts`].
pub async fn ensure_job(ctx: &Ctx, job: &JobName) -> Result<()> {
    if is_missing(&ctx.store.counts(job).await?) {
        return Err(no_such_job(job));
    }
    Ok(())
}

/// `result`, with a [`ErrorKind::NotFound`] error replaced by [`no_such_job`]: for the store
/// calls whose only "not found" is the job's own (`get_job`, `delete_job`), so that every
/// command names a missing job in the same words.
pub fn job_not_found<T>(job: &JobName, result: Result<T>) -> Result<T> {
    match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Err(no_such_job(job)),
        other => other,
    }
}

/// Names on stderr, one line each (even under `-q`: the output is incomplete without them), the
/// damaged tasks a listing left out ([`tasktrack::TaskPage::unreadable`]), with a hint on what to
/// do; returns the exit code they make: [`crate::exit::FAILURE`] (a corrupt record) if there are
/// any, else [`crate::exit::OK`].
pub fn report_unreadable(ctx: &Ctx, job: &JobName, unreadable: &[UnreadableTask]) -> u8 {
    for task in unreadable {
        let message = format!("task {job}/{} left out: {}", task.id, task.error);
        ctx.out
            .failure(crate::exit::kind_name_of(ErrorKind::Corrupt), &message);
    }
    if unreadable.is_empty() {
        return crate::exit::OK;
    }
    ctx.out.note(format!(
        "{} damaged task(s) left out: repair a record by hand and rewrite it with `tasktrack \
         retry {job} ID`, or remove it with `tasktrack delete {job} ID`",
        unreadable.len()
    ));
    crate::exit::FAILURE
}

/// Runs one command (all but `completions`, which needs no store) and returns its exit code.
pub async fn dispatch(ctx: &Ctx, command: Command) -> Result<u8> {
    match command {
        Command::Init => init::init(ctx).await,
        Command::Job(cmd) => job::job(ctx, cmd).await,
        Command::Jobs(args) => job::jobs(ctx, args).await,
        Command::Add(args) => add::add(ctx, args).await,
        Command::Run(args) => run::run(ctx, args).await,
        Command::Status(args) => status::status(ctx, args).await,
        Command::List(args) => list::list(ctx, args).await,
        Command::Show(args) => show::show(ctx, args).await,
        Command::Retry(args) => admin::retry(ctx, args).await,
        Command::Ignore(args) => admin::ignore(ctx, args).await,
        Command::Delete(args) => admin::delete(ctx, args).await,
        Command::Purge(args) => admin::purge(ctx, args).await,
        Command::Export(args) => export::export(ctx, args).await,
        Command::Report(args) => report::report(ctx, args).await,
        Command::Completions(args) => completions(&ctx.out, args),
    }
}
