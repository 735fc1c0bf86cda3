//! One command run for one task: argument substitution, environment, spawning without a shell,
//! and the last bytes of its output.

use serde_json::{Value, json};
use std::io::Write;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tasktrack::{Failure, Lease, Task};
use tempfile::TempPath;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How much of stdout and stderr is kept for the record.
pub const TAIL_BYTES: usize = 4 * 1024;
/// Stdout up to this size is kept whole, so that a JSON result can be parsed.
pub const FULL_STDOUT_BYTES: usize = 1024 * 1024;

/// The text `{data}` and `TASKTRACK_DATA` stand for: a JSON string as its text, `null` as
/// nothing, anything else as compact JSON.
pub fn data_text(data: &Value) -> String {
    match data {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Data text over this many bytes is not put in `TASKTRACK_DATA` but written to a temporary file
/// named by `TASKTRACK_DATA_FILE`. Linux refuses any single environment string over 128 KiB
/// (`MAX_ARG_STRLEN`, E2BIG), counting `TASKTRACK_DATA=` and the closing NUL, so this is the
/// largest data that fits: everything that could be started before the file existed still gets
/// `TASKTRACK_DATA`, and scripts that read only it keep working for it.
pub const DATA_ENV_MAX: usize = 128 * 1024 - "TASKTRACK_DATA=".len() - 1;

/// How the task's data reaches the command: in `TASKTRACK_DATA`, or, over [`DATA_ENV_MAX`], in a
/// temporary file named by `TASKTRACK_DATA_FILE`.
pub enum DataEnv {
    /// The data text itself, for `TASKTRACK_DATA`.
    Inline(String),
    /// The temporary file holding the data text; dropping it removes the file.
    File(TempPath),
}

impl DataEnv {
    /// The task's data text inline, or written to a new temporary file (in the system's temporary
    /// directory, `TMPDIR`, readable by this user only) when it is over [`DATA_ENV_MAX`].
    pub fn for_task(task: &Task) -> std::io::Result<Self> {
        let text = data_text(&task.data);
        if text.len() <= DATA_ENV_MAX {
            return Ok(DataEnv::Inline(text));
        }
        let mut file = tempfile::Builder::new()
            .prefix("tasktrack-data-")
            .tempfile()?;
        file.write_all(text.as_bytes())?;
        file.flush()?;
        // Closes our handle; the path (and the file) live until the `TempPath` is dropped.
        Ok(DataEnv::File(file.into_temp_path()))
    }
}

/// The failure recorded for a task whose data could not be written to its temporary file
/// ([`DataEnv::for_task`]): kind `data_file`. Retryable: it is this machine's trouble (a full
/// disk, a missing `TMPDIR`), not the data's.
pub fn data_file_failure(error: &std::io::Error, task: &Task) -> Failure {
    let data = data_text(&task.data).len();
    Failure::new(
        "data_file",
        format!(
            "cannot write the task's data to a temporary file in {}: {error}",
            std::env::temp_dir().display()
        ),
    )
    .with_detail(format!(
        "its data is {data} bytes, over the {DATA_ENV_MAX} bytes passed in TASKTRACK_DATA, so the \
         command gets it in a file named by TASKTRACK_DATA_FILE; the file could not be written \
         (set TMPDIR to a writable directory with room for it)"
    ))
}

/// Replaces `{id}`, `{job}`, `{attempt}`, `{data}` in one argument.
pub fn substitute(arg: &str, task: &Task, lease: &Lease) -> String {
    expand(arg, |name| match name {
        "id" => Some(task.id.to_string()),
        "job" => Some(task.job.to_string()),
        "attempt" => Some(lease.attempt.to_string()),
        "data" => Some(data_text(&task.data)),
        _ => None,
    })
}

/// `arg` with each `{name}` that `value` knows replaced, in one pass from left to right: what a
/// placeholder stands for is never read again, so an id `{data}` or a data text `x{attempt}`
/// reaches the command as it is. Any other `{` is kept.
fn expand(arg: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let inner = &rest[open + 1..];
        let found = inner
            .find('}')
            .and_then(|close| Some((close, value(&inner[..close])?)));
        match found {
            Some((close, text)) => {
                out.push_str(&text);
                rest = &inner[close + 1..];
            }
            None => {
                out.push('{');
                rest = inner;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether a failed start is the task's own doing: an argument or environment value made from
/// it that the system refuses — a NUL byte (`InvalidInput`), or a string over the size limit
/// (`E2BIG`: 128 KiB per string on Linux) — or a program name made from it that comes out empty
/// ([`EmptyProgram`], `InvalidInput` too), rather than the program's (not found, not
/// executable), which would fail the same way for every task.
pub fn is_task_fault(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::ArgumentListTooLong
    )
}

/// The error that stops a run whose program cannot be started, for no fault of the task's
/// ([`is_task_fault`]), naming the program as it was tried (placeholders replaced). A missing or
/// non-executable program is bad input (exit 2). A limit of the machine (too many open files or
/// processes, no memory: `--workers` beyond what it allows) is tasktrack's own trouble (exit 1):
/// "invalid input" would send the user looking for a typo in a command that is fine.
pub fn cannot_start(
    command: &[String],
    task: &Task,
    lease: &Lease,
    error: &std::io::Error,
) -> tasktrack::Error {
    let word = command.first().map(String::as_str).unwrap_or_default();
    let program = substitute(word, task, lease);
    let named = if program == word {
        format!("{word:?}")
    } else {
        format!("{program:?} (from {word:?})")
    };
    if is_system_limit(error) {
        return tasktrack::Error::backend(format!(
            "cannot start {named}: {error}: a limit of this machine, not a fault of the \
             command (lower --workers, or raise the limit: `ulimit -n` for open files, \
             `ulimit -u` for processes)"
        ));
    }
    // The system says "No such file or directory" also for a script whose #! interpreter (or a
    // binary whose loader) is missing: pointing at a file that is there would mislead.
    let hint = if error.kind() == std::io::ErrorKind::NotFound
        && program.contains('/')
        && std::path::Path::new(&program).is_file()
    {
        " (the file exists: what it needs to start is missing, such as the interpreter on its \
         #! line)"
    } else {
        ""
    };
    tasktrack::Error::invalid(format!("cannot start {named}: {error}{hint}"))
}

/// Whether starting a process failed on a limit of the machine rather than on the program:
/// too many open files (per process or system-wide), too many processes, no memory.
fn is_system_limit(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    if let Some(raw) = error.raw_os_error() {
        use rustix::io::Errno;
        return matches!(
            Errno::from_raw_os_error(raw),
            Errno::MFILE | Errno::NFILE | Errno::AGAIN | Errno::NOMEM
        );
    }
    error.kind() == std::io::ErrorKind::OutOfMemory
}

/// The failure recorded for a task whose command could not be started because of the task
/// ([`is_task_fault`]): kind `spawn`, the system's message, and what in the task caused it.
pub fn spawn_failure(error: &std::io::Error, task: &Task) -> Failure {
    let data = data_text(&task.data).len();
    let empty = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<EmptyProgram>());
    let why = if let Some(EmptyProgram(word)) = empty {
        format!(
            "the command's first word, {word:?}, comes out empty for this task (its placeholders \
             stand for nothing here: {{data}} of a task without data, say), so there is no \
             program to start"
        )
    } else if error.kind() == std::io::ErrorKind::ArgumentListTooLong && data > DATA_ENV_MAX {
        // The environment only has the file's path: the data came in through `{data}`.
        format!(
            "an argument made from this task is over the system's size limit (128 KiB per string \
             on Linux): its data is {data} bytes, too large for {{data}} in an argument; read it \
             from the file named by TASKTRACK_DATA_FILE instead (set in place of TASKTRACK_DATA \
             when the data is over {DATA_ENV_MAX} bytes), e.g. \
             sh -c 'process < \"$TASKTRACK_DATA_FILE\"'"
        )
    } else if error.kind() == std::io::ErrorKind::ArgumentListTooLong {
        format!(
            "an argument or environment value made from this task is over the system's size limit \
             (128 KiB per string on Linux); its data ({{data}}, TASKTRACK_DATA) is {data} bytes"
        )
    } else {
        "an argument or environment value made from this task is invalid: its data ({data}, \
         TASKTRACK_DATA) contains a NUL byte, which no program can receive"
            .to_string()
    };
    Failure::new("spawn", format!("cannot start the command: {error}")).with_detail(why)
}

/// The program name made from a task came out empty (the command's first word, kept here, is
/// `{data}` and the task has no data, say): the task's fault, not the program's.
#[derive(Debug)]
pub struct EmptyProgram(String);

impl std::fmt::Display for EmptyProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the program name {:?} is empty for this task", self.0)
    }
}

impl std::error::Error for EmptyProgram {}

/// A running command and the readers draining its pipes.
pub struct Running {
    /// The child process.
    pub child: Child,
    stdout: Stream,
    stderr: Stream,
    /// The file named by `TASKTRACK_DATA_FILE`, if any: held until the command has exited and
    /// its output was collected ([`Running::outputs`]), and removed when this is dropped, also
    /// when the run is interrupted.
    _data_file: Option<TempPath>,
}

/// A pipe being drained in the background into a shared buffer.
struct Stream {
    buffer: Arc<Mutex<Captured>>,
    reader: Option<JoinHandle<()>>,
}

impl Stream {
    fn start(pipe: Option<impl AsyncRead + Unpin + Send + 'static>, keep: usize) -> Self {
        let buffer = Arc::new(Mutex::new(Captured::default()));
        let reader = pipe.map(|p| tokio::spawn(drain(p, keep, buffer.clone())));
        Stream { buffer, reader }
    }

    /// What was read, after waiting at most `patience` for the end of the stream.
    async fn finish(&mut self, patience: Duration) -> Captured {
        if let Some(mut reader) = self.reader.take()
            && tokio::time::timeout(patience, &mut reader).await.is_err()
        {
            reader.abort();
        }
        self.buffer
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

/// What a stream left behind.
#[derive(Debug, Default)]
pub struct Captured {
    bytes: Vec<u8>,
    /// Whether bytes were dropped from the front.
    truncated: bool,
}

/// Starts `command` for the task: no shell, stdin closed, its own process group (so a Ctrl-C in
/// the terminal reaches `run`, which decides what happens to the children), killed if dropped.
/// The data goes in `TASKTRACK_DATA` or in the file of `TASKTRACK_DATA_FILE` (`data`), never
/// both: the other variable is removed, so a value inherited from `run`'s own environment (a
/// `run` inside a task's command) cannot mislead the command.
pub fn spawn(
    command: &[String],
    task: &Task,
    lease: &Lease,
    data: DataEnv,
) -> std::io::Result<Running> {
    let word = command.first().map(String::as_str).unwrap_or_default();
    let program = substitute(word, task, lease);
    // Spawning "" fails as "not found", which would stop the run for this one task's sake. Only
    // a word its placeholders made empty is: a word empty as given is the run's error, every
    // task's (refused before anything runs by `run`; here it is left to fail as not found).
    if program.is_empty() && !word.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            EmptyProgram(word.to_string()),
        ));
    }
    let mut cmd = Command::new(&program);
    cmd.args(command.iter().skip(1).map(|a| substitute(a, task, lease)))
        .env("TASKTRACK_JOB", task.job.as_str())
        .env("TASKTRACK_ID", task.id.as_str())
        .env("TASKTRACK_ATTEMPT", lease.attempt.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match &task.stage {
        Some(stage) => cmd.env("TASKTRACK_STAGE", stage),
        None => cmd.env_remove("TASKTRACK_STAGE"),
    };
    let data_file = match data {
        DataEnv::Inline(text) => {
            cmd.env("TASKTRACK_DATA", text)
                .env_remove("TASKTRACK_DATA_FILE");
            None
        }
        DataEnv::File(path) => {
            cmd.env("TASKTRACK_DATA_FILE", &*path)
                .env_remove("TASKTRACK_DATA");
            Some(path)
        }
    };
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd.spawn()?;
    let stdout = Stream::start(child.stdout.take(), FULL_STDOUT_BYTES);
    let stderr = Stream::start(child.stderr.take(), TAIL_BYTES);
    Ok(Running {
        child,
        stdout,
        stderr,
        _data_file: data_file,
    })
}

impl Running {
    /// Kills the command and, on Unix, its whole process group (a shell's children included),
    /// so that nothing keeps running, or keeps the pipes open, after the grace period. Returns
    /// why the group could not be signalled (a group already gone is no error); the command
    /// itself is killed in any case.
    pub fn kill(&mut self) -> std::io::Result<()> {
        let group = self.kill_group();
        // Already exited (and reaped) is fine: there is nothing left to kill.
        let _ = self.child.start_kill();
        group
    }

    /// SIGKILL to the process group; its id is the command's pid (it was started with
    /// `process_group(0)`).
    #[cfg(unix)]
    fn kill_group(&self) -> std::io::Result<()> {
        use rustix::process::{Pid, Signal, kill_process_group};
        // No id: the command was already waited for. Never pid 1: kill(-1) means "everyone".
        let Some(pid) = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .filter(|id| *id > 1)
            .and_then(Pid::from_raw)
        else {
            return Ok(());
        };
        match kill_process_group(pid, Signal::KILL) {
            Err(rustix::io::Errno::SRCH) => Ok(()),
            other => other.map_err(std::io::Error::from),
        }
    }

    #[cfg(not(unix))]
    fn kill_group(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// Collects both streams once the child has exited. A grandchild that inherited the pipes
    /// may keep them open: after [`PIPE_PATIENCE`] what was read so far is taken.
    pub async fn outputs(mut self) -> (Captured, Captured) {
        let out = self.stdout.finish(PIPE_PATIENCE).await;
        let err = self.stderr.finish(PIPE_PATIENCE).await;
        (out, err)
    }
}

/// A command not yet waited for when it is dropped (a `run` that gave up on releasing its leases
/// and exits at once, its tasks dropped with the runtime) is killed with its whole process
/// group, not only the direct child (`kill_on_drop`): nothing it started keeps running.
impl Drop for Running {
    fn drop(&mut self) {
        // No id: the command was waited for (its pid may be anyone's by now): nothing to do.
        if self.child.id().is_some() {
            let _ = self.kill();
        }
    }
}

/// How long to wait for the pipes to close after the command exited.
pub const PIPE_PATIENCE: Duration = Duration::from_secs(1);

/// Reads a pipe to its end, keeping the first `keep` bytes, or the last [`TAIL_BYTES`] once it
/// grows beyond `keep` (the pipe is always drained, so the child never blocks on a full pipe).
/// A read error ends the drain with a `[tasktrack: read error: …]` line appended, so that the
/// record shows the output was cut short (and a stdout cut short is never taken for JSON).
async fn drain(mut stream: impl AsyncRead + Unpin, keep: usize, into: Arc<Mutex<Captured>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = stream.read(&mut buf).await;
        let Ok(mut c) = into.lock() else { break };
        match read {
            Ok(0) => break,
            Ok(n) => c.push(&buf[..n], keep),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let newline = if c.bytes.last().is_some_and(|b| *b != b'\n') {
                    "\n"
                } else {
                    ""
                };
                c.push(
                    format!("{newline}[tasktrack: read error: {e}]\n").as_bytes(),
                    keep,
                );
                break;
            }
        }
    }
}

impl Captured {
    /// Appends what was read, keeping the first `keep` bytes, or the last [`TAIL_BYTES`] once
    /// there are more.
    fn push(&mut self, bytes: &[u8], keep: usize) {
        self.bytes.extend_from_slice(bytes);
        if self.bytes.len() > keep {
            let cut = self.bytes.len() - TAIL_BYTES.min(keep);
            self.bytes.drain(..cut);
            self.truncated = true;
        }
    }

    /// The last [`TAIL_BYTES`] as text (invalid UTF-8 replaced).
    pub fn tail(&self) -> String {
        let start = self.bytes.len().saturating_sub(TAIL_BYTES);
        let text = String::from_utf8_lossy(&self.bytes[start..]).into_owned();
        if start > 0 || self.truncated {
            format!("…{}", text.trim_start_matches('\u{FFFD}'))
        } else {
            text
        }
    }

    /// The task's output: stdout parsed as JSON when it is JSON, else `{"stdout": <tail>}`.
    pub fn output(&self) -> Value {
        if !self.truncated
            && let Ok(v) = serde_json::from_slice::<Value>(self.bytes.trim_ascii())
        {
            return v;
        }
        json!({ "stdout": self.tail() })
    }
}

/// "exited with code 3", "killed by signal 9 (SIGKILL)".
pub fn describe_exit(status: &ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = match sig {
                1 => " (SIGHUP)",
                2 => " (SIGINT)",
                3 => " (SIGQUIT)",
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                13 => " (SIGPIPE)",
                15 => " (SIGTERM)",
                _ => "",
            };
            return format!("killed by signal {sig}{name}");
        }
    }
    format!("ended abnormally ({status})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_json_or_a_stdout_tail() {
        let c = Captured {
            bytes: b" {\"n\": 1}\n".to_vec(),
            truncated: false,
        };
        assert_eq!(c.output(), json!({"n": 1}));
        let c = Captured {
            bytes: b"hello\n".to_vec(),
            truncated: false,
        };
        assert_eq!(c.output(), json!({"stdout": "hello\n"}));
        let c = Captured {
            bytes: vec![b'x'; 10_000],
            truncated: false,
        };
        assert_eq!(
            c.output()["stdout"].as_str().map(|s| s.chars().count()),
            Some(TAIL_BYTES + 1)
        );
    }

    /// Yields `data`, then fails.
    struct Broken(Option<&'static [u8]>);

    impl AsyncRead for Broken {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(match self.0.take() {
                Some(data) => {
                    buf.put_slice(data);
                    Ok(())
                }
                None => Err(std::io::Error::other("the pipe broke")),
            })
        }
    }

    #[tokio::test]
    async fn a_read_error_is_marked_in_the_captured_text() {
        let into = Arc::new(Mutex::new(Captured::default()));
        drain(
            Broken(Some(b"{\"partial\": ")),
            FULL_STDOUT_BYTES,
            into.clone(),
        )
        .await;
        let c = std::mem::take(&mut *into.lock().unwrap());
        assert_eq!(
            c.tail(),
            "{\"partial\": \n[tasktrack: read error: the pipe broke]\n"
        );
        assert_eq!(
            c.output(),
            json!({"stdout": "{\"partial\": \n[tasktrack: read error: the pipe broke]\n"}),
            "output cut short is not taken for JSON"
        );
    }

    /// Whether a process is gone (or a zombie: dead, waiting to be reaped).
    #[cfg(target_os = "linux")]
    fn gone(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_command_dropped_before_it_was_waited_for_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        // The shell waits for a child of its own, as `spawn` starts it: its own process group.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("sleep 600 & echo $! > \"$1\"; wait")
            .arg("sh")
            .arg(&pid_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .unwrap();
        let running = Running {
            stdout: Stream::start(child.stdout.take(), TAIL_BYTES),
            stderr: Stream::start(child.stderr.take(), TAIL_BYTES),
            child,
            _data_file: None,
        };
        let patience = std::time::Instant::now();
        let sleeper = loop {
            let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if text.ends_with('\n') {
                break text.trim().to_string();
            }
            assert!(
                patience.elapsed() < Duration::from_secs(60),
                "sleep never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // What a run that exits at once does to a command it has not waited for yet.
        drop(running);
        let patience = std::time::Instant::now();
        while !gone(&sleeper) {
            assert!(
                patience.elapsed() < Duration::from_secs(60),
                "the command's own child {sleeper} outlived it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn placeholders_are_replaced_in_one_pass_from_left_to_right() {
        let value = |name: &str| match name {
            "id" => Some("{data}".to_string()),
            "data" => Some("{id}".to_string()),
            _ => None,
        };
        assert_eq!(expand("{id}/{data}", value), "{data}/{id}");
        assert_eq!(expand("{a{id}} {nope} {", value), "{a{data}} {nope} {");
    }

    #[test]
    fn data_text_rules() {
        assert_eq!(data_text(&Value::Null), "");
        assert_eq!(data_text(&json!("a b")), "a b");
        assert_eq!(data_text(&json!({"k": 1})), "{\"k\":1}");
    }
}
