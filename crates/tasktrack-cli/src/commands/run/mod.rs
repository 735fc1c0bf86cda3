//! `run JOB -- CMD [ARG...]`: the parallel runner.
//!
//! N workers (`worker::work`) each claim one task at a time with `claim_next`, start the command
//! without a shell (`child`), heartbeat the lease every third of its length while it runs, and
//! record the outcome with the lease (so a result that arrives after the lease was lost bounces
//! with `StaleLease` and is reported, never written). A success is recorded with
//! `succeed_and_claim_next`, so the next task comes with it: one store call per task. The run
//! ends when nothing is claimable now or later in this run, when `--limit` claims were made, or
//! on Ctrl-C / SIGTERM: then no new task is claimed, running commands get `--grace` to finish, the
//! rest are killed and their leases released (the attempt is not counted), and the summary is
//! printed. Releasing may take `RELEASE_PATIENCE` at most, and a further Ctrl-C cuts it short:
//! then `run` exits at once (130) and the leases left expire on their own.

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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
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
    if args.workers > MAX_WORKERS {
        return Err(Error::invalid(format!(
            "--workers {} is over the limit of {MAX_WORKERS}",
            args.workers
        )));
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
    // Checked here too, not only against the job's stages below: a job that does not exist yet
    // (`--follow`) has none to check it against, and the claim would refuse it only once the
    // run had started.
    if let Some(stage) = &args.stage {
        validate_key("stage", stage)?;
    }
    match args.command.first() {
        None => return Err(Error::invalid("no command to run: give it after `--`")),
        // Not the tasks' fault (none of them would start): refused before anything is claimed.
        Some(program) if program.is_empty() => {
            return Err(Error::invalid(
                "the command's program (its first word after `--`) is empty: an unset shell \
                 variable, say",
            ));
        }
        Some(_) => {}
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
            let stages = if r.stages.is_empty() {
                "it has no stages".to_string()
            } else {
                format!("stages: {}", r.stages.join(", "))
            };
            return Err(Error::invalid(format!(
                "job {job:?} has no stage {stage:?} ({stages})"
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
        unreleased: AtomicU64::new(0),
        gave_up_waiting: AtomicBool::new(false),
    });
    let base_finished = ctx.store.counts(&job).await?.finished();
    let started = Instant::now();
    let mut signals = tokio::spawn(on_signals(
        shared.clone(),
        grace,
        RELEASE_PATIENCE,
        Signals::register()?,
    ));
    let progress = tokio::spawn(progress::report(shared.clone(), base_finished));
    let mut workers = tokio::task::JoinSet::new();
    for n in 1..=args.workers {
        let owner = if args.workers == 1 {
            base_owner.clone()
        } else {
            format!("{base_owner}/{n}")
        };
        workers.spawn(worker::work(shared.clone(), owner));
    }
    let workers_done = join(&shared, workers);
    tokio::pin!(workers_done);
    let mut listening = true;
    loop {
        tokio::select! {
            () = &mut workers_done => break,
            escalated = &mut signals, if listening => match escalated {
                // The workers (and any store call they hang in) are dropped with the runtime.
                Ok(Some(why)) => return Ok(abandon(&shared, why)),
                // No more signals can come: the workers end on their own.
                _ => listening = false,
            },
        }
    }
    progress.abort();
    let _ = progress.await;
    let interrupted = *shared.stop.borrow() && shared.fatal.lock().await.is_none();
    signals.abort();
    let snapshot = shared.stats.snapshot();
    let elapsed = started.elapsed();
    let counts = if interrupted {
        // Ctrl-C no longer reaches anything: an interrupted run must not hang on its summary.
        tokio::time::timeout(RELEASE_PATIENCE, ctx.store.counts(&job))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unavailable(format!(
                    "the store did not answer within {}",
                    humantime::format_duration(RELEASE_PATIENCE)
                )))
            })
    } else {
        ctx.store.counts(&job).await
    };
    let unreleased = shared.unreleased.load(std::sync::atomic::Ordering::SeqCst);
    let counts = match counts {
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
            interrupted.then_some(unreleased),
            counts.as_ref(),
        )
    })?;
    if let Some(e) = fatal {
        return Err(e);
    }
    Ok(code)
}

/// Waits for every worker to end, in the order they end. One that stopped unexpectedly (it
/// panicked: a bug) ends the run as tasktrack's own trouble, exit 1, as soon as it stops (not
/// once the workers started before it are done, which may be never): what its task came to is
/// unknown, so the exit code must not claim success, and the others must not wait for a command
/// it no longer runs.
async fn join(shared: &Shared, mut workers: tokio::task::JoinSet<()>) {
    while let Some(ended) = workers.join_next().await {
        if let Err(e) = ended {
            shared
                .give_up(Error::backend(format!(
                    "a worker stopped unexpectedly: {e}"
                )))
                .await;
        }
    }
}

/// The most workers one `run` starts. Each is a task of its own, started before any work: a
/// mistyped huge count (`--workers 99999999999`) would exhaust memory and abort. Far beyond what
/// one machine runs at once anyway (each running command holds two pipes: the default limit of
/// 1,024 open files stops a `run` well below this).
pub const MAX_WORKERS: usize = 10_000;

/// How long an interrupted run may take, once its commands were told to die, to collect them and
/// release their leases (store retries included); past it, it exits without releasing what is
/// left ([`Abandon::Timeout`]): a store that stopped answering must not keep `run` from ending.
/// Reading the summary's counts afterwards gets as long again (then they are shown as unknown).
const RELEASE_PATIENCE: Duration = Duration::from_secs(10);

/// Why an interrupted run exits at once, leaving leases to expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Abandon {
    /// Interrupted again after the commands were killed.
    Signal,
    /// Releasing took longer than [`RELEASE_PATIENCE`].
    Timeout,
}

/// First Ctrl-C / SIGTERM: stop claiming. Then after `grace`, or at a second signal: kill. Then,
/// at a further signal or once releasing the leases took `patience`: give up on them, returned
/// for `run` to exit at once. `None`: no signal can be received any more (none came).
async fn on_signals(
    shared: Arc<Shared>,
    grace: Duration,
    patience: Duration,
    mut signals: impl Interrupts,
) -> Option<Abandon> {
    if !signals.next().await {
        return None;
    }
    shared.stop.send_replace(true);
    let running = shared.busy.load(std::sync::atomic::Ordering::SeqCst);
    shared.out.warn(match running {
        0 => "interrupted: claiming no more tasks".to_string(),
        _ => format!(
            "interrupted: claiming no more tasks; {running} running command(s) get {} to finish (interrupt again to kill them now)",
            humantime::format_duration(grace)
        ),
    });
    let again = tokio::select! {
        () = tokio::time::sleep(grace) => false,
        s = signals.next() => s,
    };
    shared.kill.send_replace(true);
    if again {
        shared.out.warn(
            "interrupted again: killing the running commands and releasing their leases \
             (interrupt once more to exit at once, leaving the leases to expire)",
        );
    }
    let deadline = tokio::time::sleep(patience);
    tokio::pin!(deadline);
    tokio::select! {
        () = &mut deadline => Some(Abandon::Timeout),
        s = signals.next() => {
            if s {
                return Some(Abandon::Signal);
            }
            deadline.await;
            Some(Abandon::Timeout)
        }
    }
}

/// Says why the leases still held are left to expire; the exit code of a run that gives up on
/// them. Written under `-q` too: it is the run's outcome, not a remark (under `--json`, the
/// error line of kind `interrupted`).
fn abandon(shared: &Shared, why: Abandon) -> u8 {
    let why = match why {
        Abandon::Signal => "interrupted again".to_string(),
        Abandon::Timeout => format!(
            "the store did not answer within {} while the leases were being released",
            humantime::format_duration(RELEASE_PATIENCE)
        ),
    };
    shared.out.failure(
        "interrupted",
        &format!(
            "{why}: exiting without releasing the leases still held; their tasks stay in \
             progress until the leases expire ({} after their last renewal), then any run can \
             claim them again",
            humantime::format_duration(shared.lease_for)
        ),
    );
    exit::INTERRUPTED
}

/// Where interruptions come from: the process's signals ([`Signals`]), or a test's channel.
trait Interrupts: Send + 'static {
    /// Waits for the next one; `false` if none can come any more.
    fn next(&mut self) -> impl Future<Output = bool> + Send;
}

impl Interrupts for Signals {
    fn next(&mut self) -> impl Future<Output = bool> + Send {
        self.recv()
    }
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
    async fn recv(&mut self) -> bool {
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

/// The summary table; `interrupted` holds, for an interrupted run, how many leases it could
/// not release.
fn summary(
    job: &str,
    s: &Snapshot,
    elapsed: Duration,
    rate: f64,
    interrupted: Option<u64>,
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
    row("failed attempts", s.failed.to_string());
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
    match interrupted {
        Some(0) => row("interrupted", "yes: no lease left held".to_string()),
        Some(n) => row(
            "interrupted",
            format!("yes: {n} lease(s) could not be released, held until they expire"),
        ),
        None => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Output;
    use tokio::sync::mpsc;

    /// Interruptions a test sends through a channel.
    struct Sent(mpsc::UnboundedReceiver<()>);

    impl Interrupts for Sent {
        async fn next(&mut self) -> bool {
            self.0.recv().await.is_some()
        }
    }

    /// Nothing any test here waits for this long: it only guards against a hang.
    const HANG: Duration = Duration::from_secs(60);
    const NEVER: Duration = Duration::from_secs(3_600);

    fn shared() -> Arc<Shared> {
        let quiet = Output::new(
            false,
            true,
            0,
            Box::new(std::io::sink()),
            Box::new(std::io::sink()),
        );
        shared_with(Arc::new(tasktrack::MemoryStore::in_memory()), quiet)
    }

    /// What the workers of a `run` of job `j` on `store` share, writing to `out`.
    pub(super) fn shared_with(store: Arc<dyn tasktrack::Store>, out: Output) -> Arc<Shared> {
        Arc::new(Shared {
            store,
            clock: Arc::new(tasktrack::SystemClock),
            out,
            job: parse::job("j").unwrap(),
            stage: None,
            lease_for: DEFAULT_LEASE,
            backoff: Backoff::default(),
            command: vec!["true".to_string()],
            follow: false,
            poll: Duration::from_secs(1),
            remaining: AtomicU64::new(u64::MAX),
            busy: AtomicUsize::new(0),
            ended: Notify::new(),
            stats: stats::Stats::default(),
            stop: watch::channel(false).0,
            kill: watch::channel(false).0,
            fatal: Mutex::new(None),
            unreleased: AtomicU64::new(0),
            gave_up_waiting: AtomicBool::new(false),
        })
    }

    async fn until_set(flag: &watch::Sender<bool>, what: &str) {
        let mut rx = flag.subscribe();
        tokio::time::timeout(HANG, rx.wait_for(|v| *v))
            .await
            .unwrap_or_else(|_| panic!("{what} never happened"))
            .unwrap();
    }

    type Escalation = tokio::task::JoinHandle<Option<Abandon>>;

    fn start(
        grace: Duration,
        patience: Duration,
    ) -> (Arc<Shared>, mpsc::UnboundedSender<()>, Escalation) {
        let shared = shared();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(on_signals(shared.clone(), grace, patience, Sent(rx)));
        (shared, tx, task)
    }

    async fn outcome(task: Escalation) -> Option<Abandon> {
        tokio::time::timeout(HANG, task)
            .await
            .expect("the escalation never ended")
            .unwrap()
    }

    #[tokio::test]
    async fn the_first_interrupt_stops_the_second_kills_the_third_abandons_the_leases() {
        let (shared, tx, task) = start(NEVER, NEVER);
        tx.send(()).unwrap();
        until_set(&shared.stop, "stop").await;
        assert!(!*shared.kill.borrow(), "running commands get their grace");
        tx.send(()).unwrap();
        until_set(&shared.kill, "kill").await;
        assert!(!task.is_finished(), "the leases are being released");
        tx.send(()).unwrap();
        assert_eq!(outcome(task).await, Some(Abandon::Signal));
    }

    #[tokio::test]
    async fn after_the_grace_period_one_more_interrupt_abandons_the_leases() {
        let (shared, tx, task) = start(Duration::ZERO, NEVER);
        tx.send(()).unwrap();
        until_set(&shared.kill, "kill after the grace period").await;
        assert!(!task.is_finished(), "the leases are being released");
        tx.send(()).unwrap();
        assert_eq!(outcome(task).await, Some(Abandon::Signal));
    }

    #[tokio::test]
    async fn releasing_for_longer_than_the_patience_abandons_the_leases() {
        let (shared, tx, task) = start(NEVER, Duration::from_millis(50));
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        until_set(&shared.kill, "kill").await;
        // No further interrupt: the store just does not answer.
        assert_eq!(outcome(task).await, Some(Abandon::Timeout));
        drop(tx);
    }

    #[tokio::test]
    async fn a_worker_that_panics_ends_the_run_as_tasktracks_own_trouble() {
        let shared = shared();
        let mut workers = tokio::task::JoinSet::new();
        workers.spawn(async { panic!("a bug (the test)") });
        join(&shared, workers).await;
        assert!(*shared.stop.borrow(), "nothing more is claimed");
        let fatal = shared.fatal.lock().await.take().expect("the run failed");
        assert_eq!(exit::code(&fatal), exit::FAILURE, "{fatal}");
        assert!(
            fatal.to_string().contains("a worker stopped unexpectedly"),
            "{fatal}"
        );
    }

    /// Workers are waited for in the order they end: a panic is seen at once, and ends the run
    /// (here the first worker would wait for that forever).
    #[tokio::test]
    async fn a_panic_after_the_first_worker_ends_the_run_at_once() {
        let shared = shared();
        let mut workers = tokio::task::JoinSet::new();
        let first = shared.clone();
        workers.spawn(async move { until_set(&first.stop, "stop").await });
        workers.spawn(async { panic!("a bug (the test)") });
        tokio::time::timeout(HANG, join(&shared, workers))
            .await
            .expect("the panic was not seen");
        let fatal = shared.fatal.lock().await.take().expect("the run failed");
        assert_eq!(exit::code(&fatal), exit::FAILURE, "{fatal}");
    }

    #[tokio::test]
    async fn abandoning_the_leases_under_json_is_the_json_error_line() {
        let err = crate::tests::Buf::default();
        let out = Output::new(
            true,
            true,
            0,
            Box::new(std::io::sink()),
            Box::new(err.clone()),
        );
        let shared = shared_with(Arc::new(tasktrack::MemoryStore::in_memory()), out);
        assert_eq!(abandon(&shared, Abandon::Signal), exit::INTERRUPTED);
        let text = err.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(line["error"]["kind"], "interrupted", "{line}");
        let message = line["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("interrupted again: exiting without releasing the leases"),
            "{message}"
        );
    }

    #[test]
    fn an_interrupted_summary_says_whether_every_lease_was_released() {
        let s = Snapshot::default();
        let table = |interrupted| summary("j", &s, Duration::ZERO, 0.0, interrupted, None);
        assert!(table(Some(0)).contains("yes: no lease left held"));
        let text = table(Some(2));
        assert!(
            text.contains("yes: 2 lease(s) could not be released, held until they expire"),
            "{text}"
        );
        assert!(!text.contains("no lease left held"), "{text}");
        assert!(!table(None).contains("interrupted"));
    }
}
