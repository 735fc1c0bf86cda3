//! Output: tables for people, one JSON document for scripts, notes on stderr.
//!
//! Every command prints exactly one JSON document on stdout under `--json` (an array for
//! `list`, one object otherwise; `export` writes its own format), and human text otherwise.
//! Messages about what happened ("created 3 tasks") go to stderr so stdout stays parseable.

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tasktrack::{Error, Result, Timestamp};

/// Where a command writes.
#[derive(Clone)]
pub struct Output {
    /// `--json`.
    pub json: bool,
    /// `-q`.
    pub quiet: bool,
    /// `-v` count.
    pub verbose: u8,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    err: Arc<Mutex<Box<dyn Write + Send>>>,
    /// The reader of stdout went away: nothing more is written there.
    out_gone: Arc<AtomicBool>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("json", &self.json)
            .field("quiet", &self.quiet)
            .finish()
    }
}

impl Output {
    /// Writes to the process's stdout and stderr.
    pub fn stdio(json: bool, quiet: bool, verbose: u8) -> Self {
        Output::new(
            json,
            quiet,
            verbose,
            Box::new(std::io::stdout()),
            Box::new(std::io::stderr()),
        )
    }

    /// Writes to the given streams (tests capture them).
    pub fn new(
        json: bool,
        quiet: bool,
        verbose: u8,
        out: Box<dyn Write + Send>,
        err: Box<dyn Write + Send>,
    ) -> Self {
        Output {
            json,
            quiet,
            verbose,
            out: Arc::new(Mutex::new(out)),
            err: Arc::new(Mutex::new(err)),
            out_gone: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Writes raw text on stdout; nothing once its reader went away ([`Output::stdout_gone`]).
    pub fn print(&self, text: &str) -> Result<()> {
        if self.stdout_gone() {
            return Ok(());
        }
        let mut out = self
            .out
            .lock()
            .map_err(|_| Error::backend("stdout lock poisoned"))?;
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            // The reader went away (`tasktrack run j … | head`): it has what it wanted. That is
            // no error of the command, which ends as it would have, with its own exit code (a
            // `run` whose tasks failed still exits 3).
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.out_gone.store(true, Ordering::SeqCst);
                Ok(())
            }
            other => other.map_err(io_error),
        }
    }

    /// Whether the reader of stdout went away: a command that keeps printing (`export`,
    /// `status --watch`) stops.
    pub fn stdout_gone(&self) -> bool {
        self.out_gone.load(Ordering::SeqCst)
    }

    /// Writes `value` as one JSON document (under `--json`), or `human` otherwise.
    pub fn emit<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> Result<()> {
        if self.json {
            let text = serde_json::to_string_pretty(value)
                .map_err(|e| Error::backend(format!("cannot encode JSON: {e}")))?;
            self.print(&format!("{text}\n"))
        } else {
            let text = human();
            if text.is_empty() {
                Ok(())
            } else {
                self.print(&ensure_newline(text))
            }
        }
    }

    /// A note for people on stderr (suppressed by `-q` and `--json`).
    pub fn note(&self, text: impl AsRef<str>) {
        if !self.quiet && !self.json {
            self.stderr(text.as_ref());
        }
    }

    /// A warning on stderr (suppressed only by `-q`).
    pub fn warn(&self, text: impl AsRef<str>) {
        if !self.quiet {
            self.stderr(&format!("tasktrack: {}", text.as_ref()));
        }
    }

    /// Always written on stderr: errors.
    pub fn stderr(&self, text: &str) {
        if let Ok(mut err) = self.err.lock() {
            // Nothing sensible is left to do if stderr itself is gone.
            let _ = err.write_all(ensure_newline(text.to_string()).as_bytes());
            let _ = err.flush();
        }
    }

    /// Reports a command's error on stderr in one line (a JSON line under `--json`).
    pub fn error(&self, error: &Error) {
        self.failure(crate::exit::kind_name(error), &error.to_string());
    }

    /// Reports why a command failed on stderr in one line, under `--json` the JSON line
    /// `{"error": {"kind": kind, "message": message}}`.
    pub fn failure(&self, kind: &str, message: &str) {
        if self.json {
            let doc = serde_json::json!({ "error": { "kind": kind, "message": message } });
            self.stderr(&doc.to_string());
        } else {
            self.stderr(&format!("tasktrack: {}", one_line(message)));
        }
    }
}

fn ensure_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// Maps an I/O error on stdout onto the portable error. It names stdout: the error's kind is
/// `backend` (tasktrack's own trouble, exit 1), and "backend error: cannot write output" read
/// as the store failing to write a task's output (a full disk under `> file` is not the store's).
fn io_error(e: std::io::Error) -> Error {
    Error::backend(format!("cannot write to stdout: {e}"))
}

/// Collapses newlines so that an error is always one line (other control characters
/// escaped, as by [`printable`]).
pub fn one_line(s: &str) -> String {
    let line = s
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    printable(&line)
}

/// `s` made safe to print on a terminal: control characters other than a line break are
/// written as escapes (`\u{1b}`, `\r`, `\t`). What a task holds comes from its command (the
/// stderr tail of an error) or from whoever recorded it: shown raw, a colour code, a terminal
/// title sequence, a clear-screen or a carriage return in it would rewrite the user's screen
/// and break the table around it.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\n' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A table with the house style.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

/// `[#########.........]  45.0%`
pub fn bar(done: u64, total: u64, width: usize) -> String {
    if total == 0 {
        return format!("[{}]     -", ".".repeat(width));
    }
    let ratio = (done as f64 / total as f64).clamp(0.0, 1.0);
    let filled = ((ratio * width as f64).round() as usize).min(width);
    format!(
        "[{}{}] {:5.1}%",
        "#".repeat(filled),
        ".".repeat(width - filled),
        ratio * 100.0
    )
}

/// A timestamp for tables: `2026-11-23 11:04:46`.
pub fn when(t: Option<Timestamp>) -> String {
    match t {
        Some(t) => t.to_rfc3339().replace('T', " ").chars().take(19).collect(),
        None => "-".to_string(),
    }
}

/// Cuts `s` to `max` characters with an ellipsis, on one line.
pub fn clip(s: &str, max: usize) -> String {
    let s = one_line(s);
    if s.chars().count() <= max {
        s
    } else {
        format!(
            "{}…",
            s.chars().take(max.saturating_sub(1)).collect::<String>()
        )
    }
}
