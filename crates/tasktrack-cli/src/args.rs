//! The command line, as clap derive structs.
//!
//! Values whose validation belongs to the core (task ids, statuses, leases, JSON) are taken as
//! plain strings here and checked by the command, so that bad input gets the core's one-line
//! message and exit code 2 rather than clap's multi-line usage dump.

use clap::{Args, Parser, Subcommand};

/// Turn any command into a resumable, parallel, retried, tracked batch.
#[derive(Debug, Parser)]
#[command(name = "tasktrack", version, propagate_version = true)]
pub struct Cli {
    /// Store URL: sqlite://PATH, file://DIR, postgres://…, mysql://…, redis://…, s3://BUCKET/PREFIX,
    /// dynamodb://TABLE, mongodb://…, memory://
    // `hide_env_values`: --help must not print the URL (and its password) from the environment.
    #[arg(long, global = true, env = "TASKTRACK_STORE", hide_env_values = true, default_value = tasktrack::DEFAULT_STORE_URL)]
    pub store: String,
    /// Print one JSON document on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log more to stderr (-v: each task, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or migrate the store and print where it is.
    Init,
    /// Job settings: `job set`, `job show`.
    #[command(subcommand)]
    Job(JobCommand),
    /// Jobs with their totals, progress and state.
    Jobs(JobsArgs),
    /// Add tasks: ids as arguments, or one per line from a file or stdin (`-`).
    Add(AddArgs),
    /// Run a command for each task of a job, with parallel workers, leases and retries.
    Run(RunArgs),
    /// Counts per status (and stage) with a progress bar, for one job or all.
    Status(StatusArgs),
    /// List a job's tasks, oldest update first.
    List(ListArgs),
    /// One task's whole record: data, output, last error, history.
    Show(ShowArgs),
    /// Put tasks back to pending with zero attempts.
    Retry(RetryArgs),
    /// Skip tasks on purpose.
    Ignore(IgnoreArgs),
    /// Delete tasks, or a whole job with `--all`.
    Delete(DeleteArgs),
    /// Remove finished tasks older than a duration.
    Purge(PurgeArgs),
    /// Write a job's tasks as JSON Lines or CSV on stdout.
    Export(ExportArgs),
    /// Record an outcome without running anything.
    Report(ReportArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

/// `job …`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Create the job or change its settings (only the flags given change).
    Set(JobSetArgs),
    /// Print the job's record.
    Show(JobShowArgs),
}

/// `job set`
#[derive(Debug, Args)]
pub struct JobSetArgs {
    /// The job.
    pub job: String,
    /// Ordered pipeline stages, comma-separated (`extract,transform,load`); `""` clears them.
    #[arg(long)]
    pub stages: Option<String>,
    /// Default attempt limit for new tasks.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Default lease length (`30s`, `5m`).
    #[arg(long)]
    pub lease: Option<String>,
    /// Retry backoff `INITIAL..MAX` (`1s..5m`), or `none`.
    #[arg(long)]
    pub backoff: Option<String>,
    /// Expected number of tasks (`none` clears it): tasks not added yet count as pending.
    #[arg(long)]
    pub amount: Option<String>,
    /// Metadata, a JSON value.
    #[arg(long)]
    pub meta: Option<String>,
    /// The job's state: pending, scheduled, started, succeeded, failed, revoked.
    #[arg(long)]
    pub state: Option<String>,
}

/// `job show`
#[derive(Debug, Args)]
pub struct JobShowArgs {
    /// The job.
    pub job: String,
}

/// `jobs`
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs in this state.
    #[arg(long)]
    pub state: Option<String>,
}

/// `add`
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The job (created with defaults if new).
    pub job: String,
    /// Task ids; a lone `-` reads stdin.
    pub ids: Vec<String>,
    /// Read ids from this file (`-`: stdin): one id per line, or JSON Lines `{"id":…,"data":…}`.
    #[arg(long, short)]
    pub file: Option<String>,
    /// Data (JSON) for tasks given without their own.
    #[arg(long)]
    pub data: Option<String>,
    /// Claim order: higher first.
    // A negative priority is legitimate: without this, `--priority -5` is refused with clap's
    // tip to write `-- -5`, which would make `-5` a task id.
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Attempt limit for these tasks (default: the job's).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Start existing tasks afresh (pending, new data) instead of leaving them alone.
    #[arg(long)]
    pub replace: bool,
    /// With --replace, also replace tasks a live lease holds (their workers are fenced out).
    #[arg(long, requires = "replace")]
    pub force: bool,
}

/// `run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job.
    pub job: String,
    /// Concurrent workers.
    #[arg(long, short = 'w', default_value_t = 1)]
    pub workers: usize,
    /// Only tasks at this pipeline stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Lease length (default: the job's); renewed every third of it while the command runs.
    #[arg(long)]
    pub lease: Option<String>,
    /// Stop after this many tasks.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Worker id recorded in leases and history (default: host:pid:n); workers get `/1`, `/2`, …
    #[arg(long)]
    pub worker_id: Option<String>,
    /// Keep waiting for new tasks instead of exiting when the job is drained.
    #[arg(long)]
    pub follow: bool,
    /// Run even if the job does not exist yet or a person set its state to revoked.
    #[arg(long)]
    pub force: bool,
    /// On Ctrl-C / SIGTERM, how long running commands may finish before they are killed.
    #[arg(long, default_value = "10s")]
    pub grace: String,
    /// How often to look for new or retryable tasks while none is claimable.
    #[arg(long, default_value = "1s")]
    pub poll: String,
    /// The command and its arguments; `{id}`, `{job}`, `{attempt}`, `{data}` are substituted.
    ///
    /// Its environment has TASKTRACK_JOB, TASKTRACK_ID, TASKTRACK_ATTEMPT, TASKTRACK_STAGE
    /// (pipelines) and the task's data in TASKTRACK_DATA, or, when the data is over 131,056 bytes
    /// (too large for the environment), TASKTRACK_DATA_FILE instead: the path of a temporary file
    /// holding it, removed when the command has exited. Only one of the two is set.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// `status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The job (default: every job).
    pub job: Option<String>,
    /// Refresh every few seconds until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Refresh interval for `--watch`.
    #[arg(long, default_value = "2s")]
    pub interval: String,
}

/// `list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The job.
    pub job: String,
    /// Only these statuses, comma-separated.
    #[arg(long)]
    pub status: Option<String>,
    /// Only this pipeline stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Only ids starting with this.
    #[arg(long)]
    pub prefix: Option<String>,
    /// At most this many tasks.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Every matching task (no limit).
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
    /// Continue after this cursor (printed on stderr after a page).
    #[arg(long)]
    pub after: Option<String>,
    /// Most recently updated first.
    #[arg(long)]
    pub newest_first: bool,
}

/// `show`
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The job.
    pub job: String,
    /// The task id.
    pub id: String,
}

/// `retry`
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The job.
    pub job: String,
    /// Task ids.
    pub ids: Vec<String>,
    /// Every task whose last attempt failed: `failed` and `exhausted`.
    #[arg(long)]
    pub failed: bool,
    /// Every `exhausted` task.
    #[arg(long)]
    pub exhausted: bool,
    /// Every `ignored` task.
    #[arg(long)]
    pub ignored: bool,
    /// Also tasks that succeeded or are held by a live lease (the holder is fenced out).
    #[arg(long)]
    pub force: bool,
}

/// `ignore`
#[derive(Debug, Args)]
pub struct IgnoreArgs {
    /// The job.
    pub job: String,
    /// Task ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Why (kept in the task's history).
    #[arg(long)]
    pub reason: Option<String>,
    /// Also tasks that succeeded or are held by a live lease.
    #[arg(long)]
    pub force: bool,
}

/// `delete`
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The job.
    pub job: String,
    /// Task ids.
    pub ids: Vec<String>,
    /// The whole job and all its tasks (tasks under a live lease are kept).
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
}

/// `purge`
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The job (default: every job).
    pub job: Option<String>,
    /// Only tasks last updated longer ago than this (`30d`, `12h`).
    #[arg(long, required = true)]
    pub older_than: String,
    /// Which finished statuses, comma-separated.
    #[arg(long, default_value = "succeeded,ignored")]
    pub status: String,
}

/// `export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The job.
    pub job: String,
    /// `jsonl` (one task record per line) or `csv`.
    #[arg(long, default_value = "jsonl")]
    pub format: String,
    /// Only these statuses, comma-separated.
    #[arg(long)]
    pub status: Option<String>,
}

/// `report`
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("outcome").required(true).multiple(false))]
pub struct ReportArgs {
    /// The job.
    pub job: String,
    /// The task id (created if new).
    pub id: String,
    /// Count a success.
    #[arg(long, group = "outcome")]
    pub success: bool,
    /// Count a failure.
    #[arg(long, group = "outcome")]
    pub failure: bool,
    /// A note: the output's detail on success, the error message on failure.
    #[arg(long)]
    pub detail: Option<String>,
}

/// `completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}
