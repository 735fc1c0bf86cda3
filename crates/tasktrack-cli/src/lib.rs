//! # tasktrack-cli
//!
//! The `tasktrack` command: turn any command into a resumable, parallel, retried, tracked batch.
//!
//! ```text
//! tasktrack add convert --file ids.txt
//! tasktrack run convert --workers 8 -- ./convert.sh {id}
//! tasktrack status convert
//! tasktrack list convert --status exhausted
//! tasktrack retry convert --failed && tasktrack run convert -- ./convert.sh {id}
//! ```
//!
//! Every command opens the store named by `--store URL` (or `TASKTRACK_STORE`, default
//! [`tasktrack::DEFAULT_STORE_URL`]) through [`tasktrack::open`] and talks to it only through the
//! [`tasktrack::Store`] trait, so it works on every backend compiled in. The user guide, the JSON
//! shapes and the exit codes are in `docs/cli.md`.
//!
//! # Layout
//! - [`args`]: the clap definitions (what users type).
//! - [`commands`]: one file per command and [`commands::dispatch`]; `run` is a folder
//!   (orchestration, worker loop, child process, progress, statistics).
//! - [`output`]: tables for people, one JSON document for scripts, notes on stderr.
//! - [`exit`]: the one `match` from [`tasktrack::ErrorKind`] to exit codes.
//! - [`parse`]: durations, backoffs, JSON, ids and id files, validated before anything is written.
//! - `main.rs` parses and calls [`main`].
//!
//! # Atomicity
//! The CLI adds no locking of its own: each change is one store call, atomic in the backend, and
//! every result of `run` is written with the lease that the claim returned, so a worker that lost
//! its lease (expired, or taken by `--force`) has its late result rejected (`StaleLease`) instead of
//! overwriting the new holder's. Bulk commands (`add`, `retry --failed`, `ignore`, `delete`)
//! validate all their input first, then write task by task (`add`: batches of 1,000); a crash halfway
//! leaves every task in a valid state, and re-running the command finishes the job (creation is
//! idempotent).
//!
//! # Limits
//! - Execution is at least once: a `run` killed with SIGKILL leaves its lease to expire (the job's
//!   lease, default 5 minutes, or `--lease`); the task is then claimed again and the dead attempt is
//!   counted. Keep leases much longer than clock skew between machines.
//! - Commands are started without a shell, in their own process group; on interruption they get
//!   `--grace` (10 s) and are then killed with SIGKILL sent to that whole group (so their own
//!   children too, unless they moved to another group).
//! - Stdout is kept whole up to 1 MiB so that a JSON result can be parsed; beyond that, and for
//!   stderr, the last 4 KiB are recorded.
//! - `memory://` lives only as long as one command, so it is only useful for trying things out.
//!
//! # Testing
//! `cargo nextest run -p tasktrack-cli --all-features`: unit tests, in-process command tests on the
//! memory store (`tests/commands.rs`), and end-to-end tests that drive the real binary on SQLite
//! files in temporary directories (`tests/e2e_*.rs`); none of these needs a server. The restart
//! tests (`tests/outage.rs`, feature `all-backends`, on by default) run `run` on every network
//! backend through an outage proxy: they need the servers `bash scripts/test -p tasktrack-cli`
//! starts, and without one they print `SKIPPED` (under `CI=true` they fail).

pub mod args;
pub mod commands;
pub mod exit;
pub mod output;
pub mod parse;

use args::{Cli, Command};
use clap::Parser;
use commands::Ctx;
use output::Output;
use std::process::ExitCode;
use std::sync::Arc;
use tasktrack::{Store, SystemClock};

/// The whole program: parse the arguments, run the command, return its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Under --json a usage error is the same one JSON line as any other error, so a script
        // can read it; help and version stay text.
        Err(e) if json_requested(std::env::args_os()) && !is_help(&e) => {
            let out = Output::stdio(true, false, 0);
            out.error(&tasktrack::Error::invalid(usage_message(&e)));
            return ExitCode::from(exit::USAGE);
        }
        // clap prints help/version (exit 0) and usage errors (exit 2) itself.
        Err(e) => e.exit(),
    };
    init_tracing(cli.verbose, cli.quiet);
    let out = Output::stdio(cli.json, cli.quiet, cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.error(&tasktrack::Error::backend(format!(
                "cannot start the async runtime: {e}"
            )));
            return ExitCode::from(exit::FAILURE);
        }
    };
    let code = runtime.block_on(execute(cli, out));
    // A blocked stdin reader must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    ExitCode::from(code)
}

/// Opens the store and runs the command; errors are printed (one line) and mapped to exit codes.
pub async fn execute(cli: Cli, out: Output) -> u8 {
    if let Command::Completions(args) = cli.command {
        return finish(&out, commands::completions(&out, args));
    }
    let store = match tasktrack::open(&cli.store).await {
        Ok(store) => store,
        Err(e) => {
            out.error(&e);
            return exit::code(&e);
        }
    };
    execute_with(store, &cli.store, cli.command, out).await
}

/// Runs a command against an already opened store (tests share one memory store this way).
pub async fn execute_with(store: Arc<dyn Store>, url: &str, command: Command, out: Output) -> u8 {
    let ctx = Ctx {
        store,
        url: url.to_string(),
        out: out.clone(),
        clock: Arc::new(SystemClock),
    };
    finish(&out, commands::dispatch(&ctx, command).await)
}

fn finish(out: &Output, result: tasktrack::Result<u8>) -> u8 {
    match result {
        Ok(code) => code,
        Err(e) => {
            out.error(&e);
            exit::code(&e)
        }
    }
}

/// Whether `--json` is among the arguments (before a `--`, after which they belong to `run`'s
/// command), for the errors found before the arguments could be parsed.
pub fn json_requested(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

fn is_help(e: &clap::Error) -> bool {
    use clap::error::ErrorKind;
    matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
}

/// A clap error as one line: its message without the `error: ` prefix, the usage and the hint.
pub fn usage_message(e: &clap::Error) -> String {
    use clap::error::ErrorKind;
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return "no command given: see tasktrack --help".to_string();
    }
    let text = e.render().to_string();
    let message = text
        .split("\n\nUsage:")
        .next()
        .and_then(|m| m.split("\n\nFor more information").next())
        .unwrap_or(&text);
    let mut line = String::new();
    for part in message.trim_start_matches("error: ").lines().map(str::trim) {
        if part.is_empty() {
            continue;
        }
        if !line.is_empty() {
            line.push_str(if part.starts_with("tip:") { "; " } else { " " });
        }
        line.push_str(part);
    }
    line
}

/// Logs go to stderr: tasktrack's warnings by default, `-v` info, `-vv` debug; `RUST_LOG`
/// overrides.
///
/// Other crates log only errors unless `-vv` (then their warnings too): what they warn about
/// by default is noise to a person at a terminal, the AWS SDK's several-line notes that it
/// found no instance metadata on a laptop before tasktrack's own one-line error says the
/// credentials are missing, or sqlx's slow-statement notes.
fn init_tracing(verbose: u8, quiet: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| log_filter(verbose, quiet));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        // A log line that cannot be written (stderr is a pipe whose reader went away: `run … 2>&1
        // | head`) is dropped. By default the subscriber reports that with `eprintln!`, which
        // panics on that same stderr, in whatever task logged: a worker stopped mid-task, its
        // lease held until it expired, and the command exited 1.
        .log_internal_errors(false)
        .try_init();
}

/// The log filter of `-q`, `-v` and `-vv` (see [`init_tracing`]).
fn log_filter(verbose: u8, quiet: bool) -> tracing_subscriber::EnvFilter {
    // A target directive matches every target it prefixes: `tasktrack` covers all our crates.
    let directives = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "error,tasktrack=warn",
        (false, 1) => "error,tasktrack=info",
        _ => "warn,tasktrack=debug",
    };
    tracing_subscriber::EnvFilter::new(directives)
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// A writer the crate's tests read back: clones share one buffer.
    #[derive(Clone, Default)]
    pub(crate) struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Buf {
        /// Everything written so far, as text.
        pub(crate) fn text(&self) -> String {
            let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut buf) = self.0.lock() {
                buf.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Which of a few events pass the filter of `-q`/`-v`/`-vv`, as `level target` lines.
    fn shown(verbose: u8, quiet: bool) -> Vec<String> {
        let seen = Buf::default();
        let record = seen.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || record.clone())
            .without_time()
            .with_ansi(false);
        let subscriber = tracing_subscriber::registry()
            .with(log_filter(verbose, quiet))
            .with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "aws_config::imds::region", "no instance metadata");
            tracing::error!(target: "sqlx::pool", "pool broke");
            tracing::warn!(target: "tasktrack_sqlite::tasks", "set aside");
            tracing::info!(target: "tasktrack_cli::run", "task done");
            tracing::debug!(target: "tasktrack_core::tracker", "lease renewed");
        });
        seen.text()
            .lines()
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect()
    }

    /// Other crates' warnings show only under `-vv`; their errors always; ours by the level
    /// `-q`/`-v`/`-vv` asks for.
    #[test]
    fn other_crates_warn_only_under_vv() {
        let aws = "WARN aws_config::imds::region:";
        let sqlx = "ERROR sqlx::pool:";
        let ours = "WARN tasktrack_sqlite::tasks:";
        let info = "INFO tasktrack_cli::run:";
        let debug = "DEBUG tasktrack_core::tracker:";
        assert_eq!(shown(0, true), [sqlx]);
        assert_eq!(shown(0, false), [sqlx, ours]);
        assert_eq!(shown(1, false), [sqlx, ours, info]);
        assert_eq!(shown(2, false), [aws, sqlx, ours, info, debug]);
    }
}
