//! Progress while `run` works: an indicatif bar when stderr is a terminal, plain periodic lines
//! otherwise (logs, CI), nothing under `-q` or `--json` (where stderr holds only warnings and
//! errors).

use super::worker::Shared;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often plain lines are printed when stderr is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Reports progress until aborted. `base` is how many of the job's tasks were finished when the
/// run started, so the bar counts this run's work against what was left.
pub async fn report(shared: Arc<Shared>, base_finished: u64) {
    if shared.out.quiet || shared.out.json {
        return;
    }
    let started = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4))
            .with_finish(ProgressFinish::AndClear);
        let style = ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:24}] {pos}/{len} {msg} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#>.");
        bar.set_style(style);
        bar.set_prefix(shared.job.to_string());
        bar
    });
    let every = if bar.is_some() {
        Duration::from_millis(500)
    } else {
        PLAIN_EVERY
    };
    // When the store cannot give the counts, the last ones shown stay, and a warning is
    // printed once (not at every refresh).
    let mut counts = None;
    let mut warned = false;
    loop {
        let s = shared.stats.snapshot();
        let running = shared.busy.load(Ordering::SeqCst);
        match shared.store.counts(&shared.job).await {
            Ok(now) => counts = Some(now),
            Err(e) if !warned => {
                warned = true;
                let say = || {
                    shared.out.warn(format!(
                        "cannot read {}'s counts for the progress display: {e}",
                        shared.job
                    ))
                };
                match &bar {
                    Some(bar) => bar.suspend(say),
                    None => say(),
                }
            }
            Err(_) => {}
        }
        let (done_total, total) = counts
            .as_ref()
            .map_or((0, 0), |c| (c.finished(), c.by_status.total()));
        let done_here = done_total.saturating_sub(base_finished);
        let left = total.saturating_sub(done_total);
        let rate = s.attempts as f64 / started.elapsed().as_secs_f64().max(0.001);
        let msg = format!(
            "{} ok, {} failed, {} exhausted, {running} running, {rate:.1}/s",
            s.succeeded, s.failed, s.exhausted
        );
        match &bar {
            Some(bar) => {
                bar.set_length(done_here + left);
                bar.set_position(done_here);
                bar.set_message(msg);
            }
            // The first plain line would only say "0 done": wait one period for it.
            None if s.attempts > 0 || running > 0 => {
                shared.out.stderr(&format!(
                    "{}: {done_here}/{} done, {msg}, {left} left",
                    shared.job,
                    done_here + left
                ));
            }
            None => {}
        }
        tokio::time::sleep(every).await;
    }
}
