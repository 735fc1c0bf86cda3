//! `run JOB -- CMD [ARG...]`: the parallel runner.
//!
//! N workers ([`worker::work`]) each claim one task at a time with `claim_next`, start the command
//! without a shell ([`child`]), heartbeat the lease every third of its length while it runs, and
//! record the outcome with the lease (so a result that arrives after the lease was lost bounces
//! with `StaleLease` and is reported, never written). A success is recorded with
//! `succeed_and_claim_next`, so the next task comes with it: one store call per task. The run
//! ends when nothing is claimable now or later in this run, when `--limit` claims were made, or
//! on Ctrl-C / SIGTERM: then no new task is claimed, running commands get `--grace` to finish, the
//! rest are killed and their leases released (the attempt is not counted), and the summary is
//! printed.

mod child;
mod progress;
mod stats;
mod worker;

use super::Ctx;
use crate::args::RunArgs;
use crate::exit;
use crate::output::table;
use crate::parse;
use serde_json::json;
use stats::Snapshot;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};
use tasktrack::{Backoff, DEFAULT_LEASE, Error, ErrorKind, JobState, Result, validate_key};
use tokio::sync::{Mutex, Notify, watch};
use worker::Shared;

pub use child::{TAIL_BYTES, data_text, substitute};

/// Runs the job's tasks and returns 0 (all succeeded), 3 (some did not), 130 (interrupted).
pub async fn run(ctx: &Ctx, args: RunArgs) -> Result<u8> {
    let job = parse::job(&args.job)?;
    if args.workers == 0 {
        return Err(Error::invalid("--workers must be at least 1"));
    }
    if args.limit == Some(0) {
        return Err(Error::invalid("--limit must be at least 1"));
    }
    let grace = parse::duration("grace", &args.grace)?;
    let poll = parse::positive_duration("poll", &args.poll)?;
    let lease = args.lease.as_deref().map(parse::lease).transpose()?;
    let base_owner = args
        .worker_id
        .clone()
        .unwrap_or_else(tasktrack::tracker::default_worker_id);
    validate_key("worker id", &base_owner)?;
    if args.command.first().is_none_or(|p| p.is_empty()) {
        return Err(Error::invalid("no command to run: give it after `--`"));
    }
    if !args
        .command
        .iter()
        .any(|a| a.contains("{id}") || a.contains("{data}"))
    {
        // Legitimate for a script that reads TASKTRACK_ID, but far more often a forgotten {id}.
        ctx.out.warn(
            "the command has no {id} (nor {data}): every task runs the same command line, which \
             learns its task only from TASKTRACK_ID in its environment",
        );
    }
    let record = match ctx.store.get_job(&job).await {
        Ok(record) => Some(record),
        Err(e) if e.kind() == ErrorKind::NotFound && (args.follow || args.force) => None,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(Error::NotFound(format!(
                "job {job:?} does not exist: add tasks first (or --follow to wait for them)"
            )));
        }
        Err(e) => return Err(e),
    };
    if let Some(r) = &record {
        if r.state == JobState::Revoked && !args.force {
            return Err(Error::Conflict(format!(
                "job {job:?} is revoked; --force runs it anyway"
            )));
        }
        if let Some(stage) = &args.stage
            && !r.stages.contains(stage)
        {
            return Err(Error::invalid(format!(
                "job {job:?} has no stage {stage:?} (stages: {})",
                r.stages.join(", ")
            )));
        }
    }
    let shared = Arc::new(Shared {
        store: ctx.store.clone(),
        clock: ctx.clock.clone(),
        out: ctx.out.clone(),
        job: job.clone(),
        stage: args.stage.clone(),
        lease_for: lease
            .or(record.as_ref().map(|r| r.lease()))
            .unwrap_or(DEFAULT_LEASE),
        backoff: record.as_ref().map_or(Backoff::default(), |r| r.backoff),
        command: args.command.clone(),
        follow: args.follow,
        poll,
        remaining: AtomicU64::new(args.limit.unwrap_or(u64::MAX)),
        busy: AtomicUsize::new(0),
        ended: Notify::new(),
        stats: stats::Stats::default(),
        stop: watch::channel(false).0,
        kill: watch::channel(false).0,
        fatal: Mutex::new(None),
    });
    let base_finished = ctx.store.counts(&job).await?.finished();
    let started = Instant::now();
    let signals = tokio::spawn(on_signals(shared.clone(), grace, Signals::register()?));
    let progress = tokio::spawn(progress::report(shared.clone(), base_finished));
    let workers: Vec<_> = (1..=args.workers)
        .map(|n| {
            let owner = if args.workers == 1 {
                base_owner.clone()
            } else {
                format!("{base_owner}/{n}")
            };
            tokio::spawn(worker::work(shared.clone(), owner))
        })
        .collect();
    for w in workers {
        if let Err(e) = w.await {
            shared
                .out
                .warn(format!("a worker stopped unexpectedly: {e}"));
        }
    }
    progress.abort();
    let _ = progress.await;
    let interrupted = *shared.stop.borrow() && shared.fatal.lock().await.is_none();
    signals.abort();
    let snapshot = shared.stats.snapshot();
    let elapsed = started.elapsed();
    let counts = match ctx.store.counts(&job).await {
        Ok(counts) => Some(counts),
        Err(e) => {
            ctx.out.warn(format!(
                "cannot read {job}'s counts for the summary (shown as unknown): {e}"
            ));
            None
        }
    };
    let fatal = shared.fatal.lock().await.take();
    let code = match &fatal {
        Some(e) => exit::code(e),
        None if snapshot.tasks_not_succeeded > 0 => exit::TASKS_FAILED,
        // Stopping a follower with a signal is its normal end.
        None if interrupted && !args.follow => exit::INTERRUPTED,
        None => exit::OK,
    };
    let rate = snapshot.attempts as f64 / elapsed.as_secs_f64().max(0.001);
    let doc = json!({
        "job": job,
        "summary": snapshot,
        "interrupted": interrupted,
        "elapsed_ms": elapsed.as_millis() as u64,
        "attempts_per_second": (rate * 10.0).round() / 10.0,
        "exit_code": code,
        "error": fatal.as_ref().map(|e| e.to_string()),
        "counts": counts.as_ref().map(super::status::summary),
    });
    ctx.out.emit(&doc, || {
        summary(
            job.as_str(),
            &snapshot,
            elapsed,
            rate,
            interrupted,
            counts.as_ref(),
        )
    })?;
    if let Some(e) = fatal {
        return Err(e);
    }
    Ok(code)
}

/// First Ctrl-C / SIGTERM: stop claiming. Then after `grace`, or at a second signal: kill.
async fn on_signals(shared: Arc<Shared>, grace: Duration, mut signals: Signals) {
    if !signals.next().await {
        return;
    }
    shared.stop.send_replace(true);
    let running = shared.busy.load(std::sync::atomic::Ordering::SeqCst);
    shared.out.warn(format!(
        "interrupted: claiming no more tasks; {running} running command(s) get {} to finish (interrupt again to kill them now)",
        humantime::format_duration(grace)
    ));
    tokio::select! {
        () = tokio::time::sleep(grace) => {}
        _ = signals.next() => {}
    }
    shared.kill.send_replace(true);
}

/// SIGINT, SIGTERM and SIGHUP, registered before any work starts so that no signal can slip
/// through to the default action (which would leave leases held until they expire, and the
/// commands, in their own process groups, running on as orphans).
///
/// SIGHUP (the terminal or the SSH session closed) is handled like SIGTERM, unless `run` was
/// started with it ignored (`nohup`): then it stays ignored, as the user asked.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn register() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let fail = |e: std::io::Error| Error::backend(format!("cannot handle signals: {e}"));
            let hup = if hangup_ignored() {
                None
            } else {
                Some(signal(SignalKind::hangup()).map_err(fail)?)
            };
            Ok(Signals {
                int: signal(SignalKind::interrupt()).map_err(fail)?,
                term: signal(SignalKind::terminate()).map_err(fail)?,
                hup,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for the next signal; `false` if signals can no longer be received.
    async fn next(&mut self) -> bool {
        #[cfg(unix)]
        {
            let hup = async {
                match &mut self.hup {
                    Some(hup) => hup.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                s = self.int.recv() => s.is_some(),
                s = self.term.recv() => s.is_some(),
                s = hup => s.is_some(),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.is_ok()
        }
    }
}

/// Whether SIGHUP was ignored when `run` started (`nohup tasktrack run …`). Read from
/// `/proc/self/status` (bit 0 of `SigIgn` is SIGHUP), since asking the kernel directly takes
/// unsafe code. Elsewhere than Linux the answer is "yes", so that SIGHUP keeps its disposition:
/// a `nohup` is never overridden.
#[cfg(unix)]
fn hangup_ignored() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return true;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_none_or(|mask| mask & 1 != 0)
}

fn summary(
    job: &str,
    s: &Snapshot,
    elapsed: Duration,
    rate: f64,
    interrupted: bool,
    counts: Option<&tasktrack::Counts>,
) -> String {
    let mut t = table(&["run", job]);
    let mut row = |k: &str, v: String| {
        t.add_row(vec![k.to_string(), v]);
    };
    row("tasks processed", s.processed.to_string());
    row("commands run", s.attempts.to_string());
    row("succeeded", s.succeeded.to_string());
    if s.advanced > 0 {
        row("advanced a stage", s.advanced.to_string());
    }
    row("failed (will retry)", s.failed.to_string());
    row("exhausted", s.exhausted.to_string());
    if s.lost > 0 {
        row("lease lost (result rejected)", s.lost.to_string());
    }
    if s.released > 0 {
        row("released (lease given back)", s.released.to_string());
    }
    if s.unrecorded > 0 {
        row("outcome not recorded", s.unrecorded.to_string());
    }
    row("elapsed", format!("{:.2?}", elapsed));
    row("rate", format!("{rate:.1} commands/s"));
    if interrupted {
        row("interrupted", "yes: leases released".to_string());
    }
    if let Some(c) = counts {
        let b = &c.by_status;
        row(
            "job now",
            format!(
                "{} succeeded, {} pending, {} in progress, {} failed, {} exhausted, {} ignored",
                b.succeeded, b.pending, b.in_progress, b.failed, b.exhausted, b.ignored
            ),
        );
    }
    t.to_string()
}
