//! What a `run` did: counters per outcome, the last outcome of each task, and the summary.

use std::collections::HashMap;
use std::sync::Mutex;
use tasktrack::TaskId;

/// How one attempt ended, from the point of view of this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Recorded as succeeded.
    Succeeded,
    /// Succeeded at a stage; the task moved on to the next stage.
    Advanced,
    /// Recorded as failed; claimable again after its backoff.
    Failed,
    /// Recorded as exhausted.
    Exhausted,
    /// The lease was lost (fenced out or expired): the store rejected the result.
    Lost,
    /// Given back without counting the attempt (interrupted).
    Released,
    /// The outcome could not be recorded (store trouble); the lease will expire.
    Unrecorded,
}

impl Ended {
    /// Whether a task whose last attempt ended so makes `run` exit with 3.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Ended::Failed | Ended::Exhausted | Ended::Lost | Ended::Unrecorded
        )
    }
}

/// Counters shared by the workers.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default, Clone)]
struct Inner {
    counts: HashMap<&'static str, u64>,
    last: HashMap<TaskId, Ended>,
    attempts: u64,
}

/// A copy of the counters at one instant.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Snapshot {
    /// Distinct tasks this run started.
    pub processed: u64,
    /// Commands started (a task given back before its command ran is not one).
    pub attempts: u64,
    /// Attempts recorded as succeeded.
    pub succeeded: u64,
    /// Attempts that moved a task to its next pipeline stage.
    pub advanced: u64,
    /// Attempts recorded as failed (to be retried).
    pub failed: u64,
    /// Attempts recorded as exhausted.
    pub exhausted: u64,
    /// Attempts whose lease was lost (result rejected).
    pub lost: u64,
    /// Claims given back on interruption (the command killed, or not started yet).
    pub released: u64,
    /// Attempts whose outcome could not be written.
    pub unrecorded: u64,
    /// Tasks whose last attempt in this run did not succeed.
    pub tasks_not_succeeded: u64,
}

impl Stats {
    /// Records how an attempt whose command was started ended.
    pub fn record(&self, id: &TaskId, ended: Ended) {
        self.add(id, ended, true);
    }

    /// Records a claimed task whose command never ran, which is not a command run: either given
    /// back untouched ([`Ended::Released`] while the run stops, or when the program cannot be
    /// started at all), which is not a task processed either and leaves the task's last outcome
    /// in this run as it was; or recorded as a failure because the command cannot be started for
    /// this task (its data does not fit in an argument or the environment).
    pub fn record_not_run(&self, id: &TaskId, ended: Ended) {
        self.add(id, ended, false);
    }

    fn add(&self, id: &TaskId, ended: Ended, ran: bool) {
        if let Ok(mut s) = self.inner.lock() {
            if ran {
                s.attempts += 1;
            }
            *s.counts.entry(name(ended)).or_default() += 1;
            if ran || ended != Ended::Released {
                s.last.insert(id.clone(), ended);
            }
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let Ok(s) = self.inner.lock() else {
            return Snapshot::default();
        };
        let get = |e: Ended| s.counts.get(name(e)).copied().unwrap_or(0);
        Snapshot {
            processed: s.last.len() as u64,
            attempts: s.attempts,
            succeeded: get(Ended::Succeeded),
            advanced: get(Ended::Advanced),
            failed: get(Ended::Failed),
            exhausted: get(Ended::Exhausted),
            lost: get(Ended::Lost),
            released: get(Ended::Released),
            unrecorded: get(Ended::Unrecorded),
            tasks_not_succeeded: s.last.values().filter(|e| e.is_failure()).count() as u64,
        }
    }
}

fn name(e: Ended) -> &'static str {
    match e {
        Ended::Succeeded => "succeeded",
        Ended::Advanced => "advanced",
        Ended::Failed => "failed",
        Ended::Exhausted => "exhausted",
        Ended::Lost => "lost",
        Ended::Released => "released",
        Ended::Unrecorded => "unrecorded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_given_back_before_its_command_ran_is_no_command_run() {
        let stats = Stats::default();
        let (a, b) = (TaskId::new("a").unwrap(), TaskId::new("b").unwrap());
        stats.record(&a, Ended::Failed);
        // `a` came back for a retry, was claimed again, and given back as the run stopped.
        stats.record_not_run(&a, Ended::Released);
        stats.record(&b, Ended::Released);
        let s = stats.snapshot();
        assert_eq!((s.attempts, s.released, s.failed), (2, 2, 1));
        assert_eq!(s.processed, 2);
        assert_eq!(
            s.tasks_not_succeeded, 1,
            "a's last outcome here is still its failure"
        );
    }
}
