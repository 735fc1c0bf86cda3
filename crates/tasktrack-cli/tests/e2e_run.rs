//! End-to-end: the real `tasktrack` binary running jobs on SQLite files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::{Done, Env, finish, lines, run_script, signal, sorted_ids, wait_until};

const LONG: Duration = Duration::from_secs(60);

/// A command that writes its task's id (`$1`) to the log (`$2`).
const LOG_ID: &str = "echo \"$1\" >> \"$2\"";
/// A command that writes its task's id (`$1`) to the log (`$2`), then runs until it is killed.
const LOG_ID_AND_HANG: &str = "echo \"$1\" >> \"$2\"; sleep 30";

/// A file the tasks' commands append lines to, given to them as an argument: O_APPEND writes of
/// one short line are atomic, so it counts every execution, and tells the test when a command
/// has started.
struct Log {
    path: PathBuf,
}

impl Log {
    fn new(env: &Env, name: &str) -> Self {
        Log {
            path: env.path(name),
        }
    }

    /// The path, as a command's argument.
    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }

    fn lines(&self) -> Vec<String> {
        lines(&self.path)
    }

    /// Waits until exactly `n` lines were written.
    fn wait_for_lines(&self, what: &str, n: usize) {
        wait_until(what, LONG, || self.lines().len() == n);
    }

    /// Waits until a line was written.
    fn wait_for_a_line(&self, what: &str) {
        wait_until(what, LONG, || !self.lines().is_empty());
    }
}

/// Sends the signal (`INT`, `TERM`, `HUP`) to a `run` started in the background and waits for it
/// to end.
fn stop(run: Child, signal_name: &str) -> Done {
    signal(&run, signal_name);
    finish(run, LONG)
}

/// Asserts that each task is `pending` and holds no lease, as a run leaves the tasks it released;
/// returns their records.
fn assert_released(env: &Env, job: &str, ids: &[&str]) -> Vec<Value> {
    ids.iter()
        .map(|id| {
            let t = env.task(job, id);
            assert_eq!(t["status"], "pending", "{id}: {t}");
            assert!(t["lease"].is_null(), "{id}: nothing left locked");
            t
        })
        .collect()
}

fn add_ids(env: &Env, job: &str, n: usize) {
    let ids: String = (1..=n).map(|i| format!("t{i:03}\n")).collect();
    let done = env.tt_stdin(&["add", job, "-"], &ids);
    assert_eq!(done.code, 0, "{}", done.err);
}

#[test]
fn two_concurrent_runs_execute_each_task_exactly_once() {
    let env = Env::new();
    add_ids(&env, "once", 150);
    let log = Log::new(&env, "executions.log");
    let run_as = |worker| {
        let head = [
            "--json",
            "run",
            "once",
            "--workers",
            "4",
            "--worker-id",
            worker,
        ];
        env.spawn(&run_script(&head, LOG_ID, &["{id}", log.arg()]))
    };
    let (a, b) = (run_as("machine-a"), run_as("machine-b"));
    let (a, b) = (finish(a, LONG), finish(b, LONG));
    assert_eq!((a.code, b.code), (0, 0), "a: {}\nb: {}", a.err, b.err);
    let executions = log.lines();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for id in &executions {
        *per_id.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 150);
    assert!(
        per_id.values().all(|n| *n == 1),
        "some task ran twice: {per_id:?}"
    );
    let (pa, pb) = (
        a.json()["summary"]["processed"].as_u64().unwrap(),
        b.json()["summary"]["processed"].as_u64().unwrap(),
    );
    assert_eq!(pa + pb, 150, "the two runs split the work: {pa} + {pb}");
    let status = env.json(&["status", "once"]);
    assert_eq!(status["by_status"]["succeeded"], 150);
}

#[test]
fn failures_retry_then_exhaust_then_retry_succeeds_and_ignored_is_skipped() {
    let env = Env::new();
    assert_eq!(
        env.tt(&[
            "job",
            "set",
            "flaky",
            "--max-attempts",
            "2",
            "--backoff",
            "50ms..100ms"
        ])
        .code,
        0
    );
    add_ids(&env, "flaky", 12);
    assert_eq!(
        env.tt(&["ignore", "flaky", "t012", "--reason", "known bad"])
            .code,
        0
    );
    let flag = env.path("broken.flag");
    std::fs::write(&flag, "").unwrap();
    let log = Log::new(&env, "runs.log");
    let script = r#"echo "$1" >> "$3"; case "$1" in *3|*6) [ -e "$2" ] && { echo "broken $1" >&2; exit 7; };; esac; echo "{\"ok\":\"$1\"}""#;
    let run = run_script(
        &["run", "flaky", "--workers", "3"],
        script,
        &["{id}", flag.to_str().unwrap(), log.arg()],
    );

    let first = env.tt(&run);
    assert_eq!(first.code, 3, "some ended exhausted: {}", first.err);
    assert!(
        !log.lines().iter().any(|l| l == "t012"),
        "the ignored task never ran"
    );
    let exhausted = env.json(&["list", "flaky", "--status", "exhausted"]);
    assert_eq!(sorted_ids(&exhausted), ["t003", "t006"]);
    let t3 = env.task("flaky", "t003");
    assert_eq!(
        t3["attempts"], 2,
        "retried after its backoff within the same run"
    );
    assert_eq!(t3["error"]["message"], "exited with code 7");
    assert_eq!(t3["error"]["detail"], "broken t003\n");

    std::fs::remove_file(&flag).unwrap();
    let retried = env.json(&["retry", "flaky", "--failed"]);
    assert_eq!(retried["retried"], 2);
    let second = env.tt(&run);
    assert_eq!(second.code, 0, "{}", second.err);
    assert_eq!(env.task("flaky", "t003")["output"]["ok"], "t003");
    let status = env.json(&["status", "flaky"]);
    assert_eq!(
        (
            status["by_status"]["succeeded"].as_u64(),
            status["by_status"]["ignored"].as_u64()
        ),
        (Some(11), Some(1))
    );
}

#[test]
fn sigkill_mid_task_then_a_later_run_after_lease_expiry_finishes_it() {
    let env = Env::new();
    add_ids(&env, "crash", 1);
    let log = Log::new(&env, "starts.log");
    let mut victim = env.spawn(&run_script(
        &["run", "crash", "--lease", "1s"],
        "echo start >> \"$1\"; sleep 5",
        &[log.arg()],
    ));
    log.wait_for_a_line("the command to start");
    victim.kill().unwrap(); // SIGKILL: no chance to release anything
    victim.wait().unwrap();
    let held = env.task("crash", "t001");
    assert_eq!(held["status"], "in_progress");
    let expires = held["lease"]["expires_at"].as_str().unwrap().to_string();
    // Wait past the expiry (heartbeats stopped with the process).
    std::thread::sleep(Duration::from_millis(1_300));
    assert_eq!(
        env.task("crash", "t001")["lease"]["expires_at"],
        expires.as_str(),
        "nobody renewed the dead lease"
    );
    let later = env.tt(&run_script(
        &["--json", "run", "crash", "--lease", "10s"],
        "echo '{\"recovered\":true}'",
        &[],
    ));
    assert_eq!(later.code, 0, "{}", later.err);
    let t = env.task("crash", "t001");
    assert_eq!(t["status"], "succeeded");
    assert_eq!(t["attempts"], 2, "the dead attempt is counted");
    let outcomes: Vec<&str> = t["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["lease_expired", "succeeded"]);
    assert_eq!(t["output"]["recovered"], true);
}

#[test]
fn ctrl_c_releases_the_leases_of_killed_commands() {
    let env = Env::new();
    add_ids(&env, "stop", 3);
    let log = Log::new(&env, "starts.log");
    let run = env.spawn(&run_script(
        &[
            "--json",
            "run",
            "stop",
            "--workers",
            "2",
            "--grace",
            "300ms",
        ],
        LOG_ID_AND_HANG,
        &["{id}", log.arg()],
    ));
    log.wait_for_lines("two commands to start", 2);
    let start = Instant::now();
    let done = stop(run, "INT");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "grace then kill, not the command's 30 s"
    );
    assert_eq!(done.code, 130, "{}", done.err);
    assert_eq!(done.json()["summary"]["released"], 2);
    assert_eq!(done.json()["interrupted"], true);
    for t in assert_released(&env, "stop", &["t001", "t002", "t003"]) {
        let id = &t["id"];
        assert_eq!(t["attempts"], 0, "{id}: a released attempt is not counted");
    }
}

/// Adds tasks with their data through JSON Lines on stdin (data over 128 KiB cannot be an
/// argument of `add`).
fn add_with_data(env: &Env, job: &str, tasks: &[(&str, &str)]) {
    let jsonl: String = tasks
        .iter()
        .map(|(id, data)| format!("{}\n", serde_json::json!({ "id": id, "data": data })))
        .collect();
    let done = env.tt_stdin(&["add", job, "-"], &jsonl);
    assert_eq!(done.code, 0, "{}", done.err);
}

/// Starts the binary in the background with these extra environment variables.
fn spawn_with(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> std::process::Child {
    let mut command = env.command(args);
    command
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.spawn().unwrap()
}

#[test]
fn a_data_file_is_removed_when_the_run_is_interrupted() {
    let env = Env::new();
    let tmp = env.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let big = "z".repeat(200 * 1024);
    add_with_data(&env, "bigstop", &[("t1", &big)]);
    let seen = Log::new(&env, "seen.log");
    let run = spawn_with(
        &env,
        &[("TMPDIR", tmp.to_str().unwrap())],
        &run_script(
            &["--json", "run", "bigstop", "--grace", "200ms"],
            "echo \"$TASKTRACK_DATA_FILE\" >> \"$1\"; sleep 30",
            &[seen.arg()],
        ),
    );
    seen.wait_for_lines("the command to start", 1);
    let file = PathBuf::from(seen.lines().remove(0));
    assert_eq!(file.parent(), Some(tmp.as_path()), "in TMPDIR");
    assert_eq!(
        std::fs::metadata(&file).map(|m| m.len()).ok(),
        Some(big.len() as u64),
        "the whole data, while the command runs"
    );
    let done = stop(run, "INT");
    assert_eq!(done.code, 130, "{}", done.err);
    assert_eq!(done.json()["summary"]["released"], 1);
    assert!(!file.exists(), "removed: {}", file.display());
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "nothing left in TMPDIR"
    );
}

#[test]
fn data_variables_inherited_by_run_never_reach_a_command() {
    let env = Env::new();
    let big = "z".repeat(200 * 1024);
    add_with_data(&env, "inherit", &[("big", &big), ("small", "payload")]);
    // As if this `run` were itself started by a task's command.
    let run = spawn_with(
        &env,
        &[
            ("TASKTRACK_DATA", "stale"),
            ("TASKTRACK_DATA_FILE", "/stale/file"),
        ],
        &run_script(
            &["--json", "run", "inherit"],
            r#"printf '{"data":"%s","file":"%s"}' "${TASKTRACK_DATA-unset}" "${TASKTRACK_DATA_FILE-unset}""#,
            &[],
        ),
    );
    let done = finish(run, LONG);
    assert_eq!(done.code, 0, "{}", done.err);
    let small = env.task("inherit", "small");
    assert_eq!(
        small["output"],
        serde_json::json!({"data": "payload", "file": "unset"})
    );
    let big = env.task("inherit", "big");
    assert_eq!(big["output"]["data"], "unset", "{big}");
    let file = big["output"]["file"].as_str().unwrap();
    assert!(file.contains("tasktrack-data-"), "{file}");
}

#[test]
fn data_that_cannot_be_written_to_its_file_fails_the_attempt_retryably() {
    let env = Env::new();
    let big = "z".repeat(200 * 1024);
    add_with_data(&env, "nowrite", &[("big", &big)]);
    let missing = env.path("no-such-dir");
    let run = spawn_with(
        &env,
        &[("TMPDIR", missing.to_str().unwrap())],
        &["--json", "run", "nowrite", "--limit", "1", "--", "true"],
    );
    let done = finish(run, LONG);
    assert_eq!(done.code, 3, "{}", done.err);
    let summary = &done.json()["summary"];
    assert_eq!(
        (summary["attempts"].as_u64(), summary["failed"].as_u64()),
        (Some(0), Some(1)),
        "{summary}"
    );
    assert!(
        done.err.contains(
            "nowrite/big: cannot write the task's data to a temporary file, recorded as its failure: "
        ),
        "{}",
        done.err
    );
    let t = env.task("nowrite", "big");
    assert_eq!(t["status"], "failed", "retried later, not exhausted: {t}");
    assert_eq!(t["error"]["kind"], "data_file", "{t}");
    let message = t["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "cannot write the task's data to a temporary file in {}: ",
            missing.display()
        )),
        "{message}"
    );
    assert!(
        t["error"]["detail"].as_str().unwrap().contains("TMPDIR"),
        "{t}"
    );
}

/// Whether a process is gone (or a zombie nobody reaped yet: it runs no more either).
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
#[test]
fn after_the_grace_period_the_whole_process_group_is_killed() {
    let env = Env::new();
    add_ids(&env, "group", 1);
    let pids = Log::new(&env, "pids.log");
    // The shell waits for a child of its own: killing the shell alone would leave `sleep` running.
    let run = env.spawn(&run_script(
        &["--json", "run", "group", "--grace", "100ms"],
        "sleep 30 & echo $! >> \"$1\"; wait",
        &[pids.arg()],
    ));
    pids.wait_for_lines("the grandchild to start", 1);
    let done = stop(run, "INT");
    assert_eq!(done.code, 130, "{}", done.err);
    assert!(!done.err.contains("could not kill"), "{}", done.err);
    let sleeper = pids.lines().remove(0);
    wait_until(
        "the grandchild to be killed",
        Duration::from_secs(5),
        || gone(&sleeper),
    );
}

#[test]
fn sigterm_lets_a_running_command_finish_within_the_grace_period() {
    let env = Env::new();
    add_ids(&env, "grace", 2);
    let log = Log::new(&env, "starts.log");
    let run = env.spawn(&run_script(
        &["run", "grace", "--grace", "20s"],
        "echo go >> \"$1\"; sleep 1; echo '{\"finished\":1}'",
        &[log.arg()],
    ));
    log.wait_for_a_line("the command to start");
    let done = stop(run, "TERM");
    assert_eq!(done.code, 130, "{}", done.err);
    let statuses: Vec<String> = ["t001", "t002"]
        .iter()
        .map(|id| {
            env.task("grace", id)["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        statuses.contains(&"succeeded".to_string()),
        "the running one finished: {statuses:?}"
    );
    assert!(
        statuses.contains(&"pending".to_string()),
        "no new task was claimed: {statuses:?}"
    );
}

#[test]
fn follow_picks_up_a_task_added_while_it_waits() {
    let env = Env::new();
    assert_eq!(env.tt(&["job", "set", "feed"]).code, 0);
    let log = Log::new(&env, "ran.log");
    let run = env.spawn(&run_script(
        &["run", "feed", "--follow", "--poll", "100ms"],
        LOG_ID,
        &["{id}", log.arg()],
    ));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(env.tt(&["add", "feed", "late-arrival"]).code, 0);
    wait_until("the new task to run", LONG, || {
        log.lines() == ["late-arrival"]
    });
    let done = stop(run, "TERM");
    assert_eq!(
        done.code, 0,
        "stopping a follower is its normal end: {}",
        done.err
    );
    assert_eq!(env.task("feed", "late-arrival")["status"], "succeeded");
}

#[test]
fn a_result_after_the_lease_was_lost_is_rejected_never_written() {
    let env = Env::new();
    add_ids(&env, "fence", 1);
    let log = Log::new(&env, "starts.log");
    let run = env.spawn(&run_script(
        &["--json", "run", "fence", "--limit", "1", "--lease", "600ms"],
        "echo go >> \"$1\"; sleep 1.5; echo '{\"late\":true}'",
        &[log.arg()],
    ));
    log.wait_for_a_line("the command to start");
    // A person takes the task back while the command runs: the holder is fenced out.
    assert_eq!(env.tt(&["retry", "fence", "t001", "--force"]).code, 0);
    let done = finish(run, LONG);
    assert_eq!(done.code, 3, "{}", done.err);
    assert_eq!(done.json()["summary"]["lost"], 1);
    assert!(done.err.contains("lease lost"), "reported: {}", done.err);
    let t = env.task("fence", "t001");
    assert_eq!(t["status"], "pending", "{t}");
    assert!(
        t["output"].is_null(),
        "the late result was never written: {t}"
    );
}

#[cfg(feature = "all-backends")]
#[test]
fn the_same_session_works_on_the_file_store() {
    let env = Env::file_store();
    assert_eq!(env.tt(&["job", "set", "f", "--max-attempts", "1"]).code, 0);
    add_ids(&env, "f", 6);
    let first = env.tt(&run_script(
        &["--json", "run", "f", "--workers", "2"],
        "[ \"$1\" != t004 ] && echo '{\"ok\":1}'",
        &["{id}"],
    ));
    assert_eq!(first.code, 3, "{}", first.err);
    assert_eq!(first.json()["summary"]["exhausted"], 1);
    assert_eq!(env.json(&["retry", "f", "--exhausted"])["retried"], 1);
    assert_eq!(env.tt(&["run", "f", "--", "true"]).code, 0);
    assert_eq!(env.json(&["status", "f"])["by_status"]["succeeded"], 6);
    assert_eq!(env.json(&["list", "f"]).as_array().map(Vec::len), Some(6));
}

/// The file store skips a damaged task file in claims and listings (with a warning) but still
/// counts it as pending: `run` waited for it forever, polling. It runs the tasks it can read
/// and ends; the damaged file is left as it is, for a person to look at.
#[cfg(feature = "all-backends")]
#[test]
fn a_damaged_task_file_does_not_keep_run_waiting_forever() {
    let env = Env::file_store();
    add_ids(&env, "dmg", 3);
    let damaged = env.path("store/jobs/dmg/tasks/t002.json");
    std::fs::write(&damaged, "{garbage").unwrap();
    let run = env.spawn(&[
        "--json", "run", "dmg", "--poll", "20ms", "--", "true", "{id}",
    ]);
    let done = finish(run, LONG);
    assert_eq!(done.code, 0, "{}", done.err);
    assert_eq!(done.json()["summary"]["succeeded"], 2, "{}", done.out);
    assert!(
        done.err.contains("corrupt"),
        "the damage is reported: {}",
        done.err
    );
    assert_eq!(std::fs::read_to_string(&damaged).unwrap(), "{garbage");
}

#[test]
fn a_hangup_releases_the_leases_like_sigterm() {
    // Under `nohup` the binary inherits SIGHUP ignored and (rightly) keeps it so.
    let ignored = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        })
        .is_none_or(|mask| mask & 1 != 0);
    if ignored {
        eprintln!("skipped: SIGHUP is ignored in this environment (or not on Linux)");
        return;
    }
    let env = Env::new();
    add_ids(&env, "hup", 2);
    let log = Log::new(&env, "starts.log");
    let run = env.spawn(&run_script(
        &["--json", "run", "hup", "--workers", "2", "--grace", "200ms"],
        LOG_ID_AND_HANG,
        &["{id}", log.arg()],
    ));
    log.wait_for_lines("two commands to start", 2);
    // The terminal or the SSH session went away.
    let done = stop(run, "HUP");
    assert_eq!(done.code, 130, "{}", done.err);
    assert_eq!(done.json()["summary"]["released"], 2);
    assert_released(&env, "hup", &["t001", "t002"]);
}

#[test]
fn a_command_without_a_placeholder_is_warned_about_and_runs() {
    let env = Env::new();
    add_ids(&env, "same", 2);
    let done = env.tt(&["run", "same", "--", "true"]);
    assert_eq!(done.code, 0, "{}", done.err);
    assert!(
        done.err.contains("has no {id}"),
        "a forgotten {{id}} is pointed out: {}",
        done.err
    );
    assert_eq!(env.json(&["status", "same"])["by_status"]["succeeded"], 2);
    let quiet = env.tt(&["run", "same", "-q", "--", "sh", "-c", "true", "{id}"]);
    assert!(!quiet.err.contains("has no {id}"), "{}", quiet.err);
}

#[test]
fn a_lease_over_a_century_is_refused_before_run_starts() {
    let env = Env::new();
    assert_eq!(env.tt(&["add", "j", "a"]).code, 0);
    let done = env.tt(&["run", "j", "--lease", "500000y", "--", "true", "{id}"]);
    done.assert_one_line_error(2, "--lease 500000y");
    assert!(done.err.contains("--lease"), "{}", done.err);
    assert!(done.out.is_empty(), "no run summary: {}", done.out);
    assert_eq!(env.task("j", "a")["attempts"], 0);
}

#[test]
fn a_second_ctrl_c_kills_at_once_and_the_leases_are_still_released() {
    let env = Env::new();
    add_ids(&env, "twice", 3);
    let log = Log::new(&env, "starts.log");
    // Stderr goes to a file, read while the run goes on, to interrupt again only once the first
    // interrupt was seen (two signals close together may arrive as one).
    let stderr = env.path("stderr.log");
    let run = env
        .command(&run_script(
            &["--json", "run", "twice", "--workers", "2", "--grace", "1h"],
            LOG_ID_AND_HANG,
            &["{id}", log.arg()],
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    log.wait_for_lines("two commands to start", 2);
    signal(&run, "INT");
    let said = |what: &str| lines(&stderr).iter().any(|l| l.contains(what));
    wait_until("the first interrupt", LONG, || {
        said("interrupted: claiming no more")
    });
    let done = stop(run, "INT");
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(done.code, 130, "{err}");
    assert!(
        err.contains("interrupt once more to exit at once, leaving the leases to expire"),
        "the way out is shown: {err}"
    );
    assert!(!err.contains("without releasing"), "{err}");
    assert_eq!(done.json()["summary"]["released"], 2);
    assert_released(&env, "twice", &["t001", "t002", "t003"]);
}

/// `tasktrack run … | head`: a reader that goes away before the summary does not turn the run's
/// exit code into 0.
#[test]
fn a_closed_stdout_keeps_the_exit_code() {
    let env = Env::new();
    let set = env.tt(&["job", "set", "gone", "--max-attempts", "1"]);
    assert_eq!(set.code, 0, "{}", set.err);
    add_ids(&env, "gone", 1);
    let mut run = env
        .command(&run_script(&["run", "gone"], "exit 1", &["{id}"]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before anything was printed.
    drop(run.stdout.take());
    let done = finish(run, LONG);
    assert_eq!(done.code, 3, "{}", done.err);
    assert_eq!(env.task("gone", "t001")["status"], "exhausted");
}
