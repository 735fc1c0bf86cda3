//! Shared helpers of the CLI tests: the real `tasktrack` binary on a SQLite file in a temporary
//! directory ([`Env`]), and what the in-process tests (`commands.rs`) use too: a finished
//! command ([`Done`]), the arguments of a `run` of a shell script ([`run_script`]), the ids of a
//! listed job ([`sorted_ids`]).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One isolated store (its own SQLite file) and a scratch directory.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub url: String,
}

/// A finished command.
pub struct Done {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Done {
    /// Asserts that the command failed with `code` in exactly one line on stderr (stdout is left
    /// to the caller: some failures print a summary); `what` names the case in the message.
    #[track_caller]
    pub fn assert_one_line_error(&self, code: i32, what: impl std::fmt::Debug) {
        assert_eq!(self.code, code, "{what:?}: {}", self.err);
        assert_eq!(
            self.err.lines().count(),
            1,
            "{what:?}: one line expected, got {:?}",
            self.err
        );
    }

    /// Stderr as one JSON document: the `--json` error line.
    pub fn error_json(&self) -> Value {
        serde_json::from_str(self.err.trim())
            .unwrap_or_else(|e| panic!("stderr is not one JSON line ({e}): {}", self.err))
    }

    /// Stdout as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.out).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.out, self.err
            )
        })
    }
}

impl From<Output> for Done {
    fn from(o: Output) -> Self {
        Done {
            code: o.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&o.stdout).into_owned(),
            err: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tasktrack.db").display());
        Env { dir, url }
    }

    /// The store at `url`, with a scratch directory of its own.
    pub fn at(url: String) -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
            url,
        }
    }

    /// A `file://` store in its own temporary directory.
    pub fn file_store() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("store").display());
        Env { dir, url }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The binary with this env's store.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tasktrack"));
        c.env("TASKTRACK_STORE", &self.url)
            .env_remove("RUST_LOG")
            .args(args);
        c
    }

    /// Runs to completion.
    pub fn tt(&self, args: &[&str]) -> Done {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    }

    /// Runs with `input` on stdin.
    pub fn tt_stdin(&self, args: &[&str], input: &str) -> Done {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap().into()
    }

    /// Runs with `--json` and expects success.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let done = self.tt(&all);
        assert_eq!(done.code, 0, "{args:?} failed: {}", done.err);
        done.json()
    }

    /// Starts in the background.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// A task's record.
    pub fn task(&self, job: &str, id: &str) -> Value {
        self.json(&["show", job, id])
    }
}

/// Lines of a file (empty if it does not exist yet).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(String::from).collect())
        .unwrap_or_default()
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a signal by name (`INT`, `TERM`) with kill(1).
pub fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Waits for a background child with a timeout and returns its output.
pub fn finish(mut child: Child, timeout: Duration) -> Done {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap().into();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("process did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The arguments `HEAD... -- sh -c SCRIPT sh ARGS...`: `HEAD` is the `run` (`["run", "job",
/// "--workers", "2"]`), and each task's command a shell script with `ARGS` as its `$1`, `$2`, …
/// (`{id}` among them becomes the task's id).
pub fn run_script<'a>(head: &[&'a str], script: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = head.to_vec();
    all.extend(["--", "sh", "-c", script, "sh"]);
    all.extend_from_slice(args);
    all
}

/// The ids of a `list --json` answer, sorted.
pub fn sorted_ids(list: &Value) -> Vec<&str> {
    let mut ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}
