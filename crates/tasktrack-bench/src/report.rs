//! The benchmark's output: a table for people, JSON for scripts.

use crate::{Args, Drain, Mode};
use anyhow::Result;
use comfy_table::Table;
use serde::Serialize;

/// Everything one run measured (`--json` prints this).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The store URL.
    pub store: String,
    /// Backend name.
    pub backend: &'static str,
    /// Tasks created and drained.
    pub tasks: usize,
    /// Concurrent workers.
    pub workers: usize,
    /// Tasks per claim.
    pub batch: usize,
    /// How workers completed their claims: `"handoff"`, `"two_calls"` or `{"batched": B}`.
    pub mode: Mode,
    /// Bulk create rate, tasks/s.
    pub create_per_sec: f64,
    /// Claim+succeed rate, tasks/s.
    pub tasks_per_sec: f64,
    /// Drain details.
    pub drain: Drain,
    /// Median counts(job) latency on the full job, ms.
    pub counts_ms: f64,
    /// Median latency of an idle claim_next over `tasks` tasks none of which is due, ms
    /// (`--idle-claims`; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_claim_ms: Option<f64>,
    /// The backend's raw ceiling, ops/s (same workers, same run): the mean of `ceiling_runs`.
    pub ceiling_per_sec: Option<f64>,
    /// The ceiling measured just before and just after the drain, ops/s (empty with
    /// `--no-ceiling`). Far apart, they say the machine's speed changed during the run.
    pub ceiling_runs: Vec<f64>,
    /// tasks_per_sec / ceiling_per_sec.
    pub ratio: Option<f64>,
}

impl Report {
    /// Assembles the report.
    pub fn new(
        url: &str,
        backend: &'static str,
        args: &Args,
        create_per_sec: f64,
        drain: Drain,
        counts_ms: f64,
        ceiling_runs: Vec<f64>,
    ) -> Self {
        let tasks_per_sec = drain.tasks as f64 / drain.seconds;
        let ceiling = (!ceiling_runs.is_empty())
            .then(|| ceiling_runs.iter().sum::<f64>() / ceiling_runs.len() as f64);
        Report {
            store: url.to_string(),
            backend,
            tasks: args.tasks,
            workers: args.workers,
            batch: args.batch,
            mode: Mode::of(args),
            create_per_sec,
            tasks_per_sec,
            drain,
            counts_ms,
            idle_claim_ms: None,
            ceiling_per_sec: ceiling,
            ceiling_runs,
            ratio: ceiling.map(|c| tasks_per_sec / c),
        }
    }

    /// Adds the idle-claim latency (`--idle-claims`).
    pub fn with_idle_claim_ms(self, idle_claim_ms: Option<f64>) -> Self {
        Report {
            idle_claim_ms,
            ..self
        }
    }

    /// Prints the report.
    pub fn print(&self, json: bool) -> Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
            return Ok(());
        }
        let mut table = Table::new();
        table.set_header([
            "backend",
            "tasks",
            "workers",
            "mode",
            "create/s",
            "claim+succeed/s",
            "claim ms",
            "succeed ms",
            "counts ms",
            "idle claim ms",
            "ceiling ops/s (before / after)",
            "ratio",
        ]);
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or("n/a".to_string(), |v| format!("{v:.digits$}"))
        };
        table.add_row([
            self.backend.to_string(),
            self.tasks.to_string(),
            self.workers.to_string(),
            match self.mode {
                Mode::Handoff => "hand-off".to_string(),
                Mode::TwoCalls => "two calls".to_string(),
                Mode::Batched(b) => format!("batch {b}"),
            },
            format!("{:.0}", self.create_per_sec),
            format!("{:.0}", self.tasks_per_sec),
            format!("{:.3}", self.drain.claim_ms),
            format!("{:.3}", self.drain.succeed_ms),
            format!("{:.3}", self.counts_ms),
            opt(self.idle_claim_ms, 3),
            match (self.ceiling_per_sec, self.ceiling_runs.as_slice()) {
                (Some(mean), [before, after]) => format!("{mean:.0} ({before:.0} / {after:.0})"),
                (mean, _) => opt(mean, 0),
            },
            opt(self.ratio, 2),
        ]);
        println!("{table}");
        Ok(())
    }
}
