//! End-to-end: bad input and bad stores give one line on stderr, a non-zero exit, and no writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::time::Duration;
use support::{Done, Env, finish, lines, signal, wait_until};

const LONG: Duration = Duration::from_secs(60);

#[test]
fn invalid_input_is_one_line_nonzero_and_writes_nothing() {
    let env = Env::new();
    let bad_json = env.path("bad.jsonl");
    std::fs::write(&bad_json, "{\"id\":\"fine\"}\n{\"id\":\"broken\",\n").unwrap();
    let bad_json = bad_json.to_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["add", "j", "ok", ""], 2),
        (vec!["add", "j", "ok", "bad\u{1}id"], 2),
        (vec!["add", "j", "--file", &bad_json], 2),
        (vec!["add", "", "x"], 2),
        (vec!["list", "j", "--status", "done"], 2),
        (vec!["retry", "j", "x", ""], 2),
        (vec!["run", "j", "--lease", "0s", "--", "true"], 2),
        (vec!["job", "set", "j", "--lease", "0s"], 2),
        (vec!["job", "set", "j", "--meta", "{oops"], 2),
        (vec!["--store", "ftp://example.com/x", "add", "j", "x"], 2),
        (vec!["--store", "nonsense", "add", "j", "x"], 2),
        (
            vec![
                "--store",
                "sqlite:///definitely/not/a/dir/t.db",
                "add",
                "j",
                "x",
            ],
            1,
        ),
    ];
    for (args, code) in &cases {
        let done = env.tt(args);
        done.assert_one_line_error(*code, args);
        assert!(
            done.err.starts_with("tasktrack: "),
            "{args:?}: {}",
            done.err
        );
        assert!(done.out.is_empty(), "{args:?}: {}", done.out);
    }
    let stdin = env.tt_stdin(&["add", "j", "-"], "good\n\u{7}bell\n");
    assert_eq!(stdin.code, 2, "{}", stdin.err);
    assert!(
        stdin.err.contains("stdin:2"),
        "the line is named: {}",
        stdin.err
    );
    let status = env.tt(&["status", "j"]);
    assert_eq!(
        status.code, 4,
        "nothing was written, not even the job: {}",
        status.err
    );
}

#[cfg(feature = "all-backends")]
#[test]
fn an_unreachable_server_is_exit_1_in_one_line() {
    let env = Env::new();
    for url in ["postgres://u:p@127.0.0.1:1/db", "redis://127.0.0.1:1/"] {
        env.tt(&["--store", url, "status", "j"])
            .assert_one_line_error(1, url);
    }
}

#[test]
fn json_errors_and_exit_codes_for_missing_and_refused() {
    let env = Env::new();
    let missing = env.tt(&["--json", "show", "j", "nope"]);
    assert_eq!(missing.code, 4);
    assert_eq!(missing.error_json()["error"]["kind"], "not_found");
    assert_eq!(env.tt(&["add", "j", "a"]).code, 0);
    assert_eq!(env.tt(&["run", "j", "--", "true"]).code, 0);
    let refused = env.tt(&["retry", "j", "a"]);
    assert_eq!(
        refused.code, 5,
        "a succeeded task is not retried without --force: {}",
        refused.err
    );
    assert_eq!(env.tt(&["retry", "j", "a", "--force"]).code, 0);
    let usage = env.tt(&["list"]);
    assert_eq!(usage.code, 2, "clap usage errors are exit 2");
}

#[test]
fn a_job_that_does_not_exist_is_exit_4_with_a_one_line_error_naming_it() {
    let env = Env::new();
    assert_eq!(env.tt(&["add", "real", "a"]).code, 0);
    let text = env.tt(&["list", "nosuchjob"]);
    assert_eq!((text.code, text.out.as_str()), (4, ""), "{}", text.err);
    assert_eq!(
        text.err,
        "tasktrack: not found: job \"nosuchjob\" does not exist (`tasktrack jobs` lists the jobs)\n"
    );
    let json = env.tt(&["--json", "list", "nosuchjob"]);
    assert_eq!((json.code, json.out.as_str()), (4, ""), "{}", json.err);
    let err = json.error_json();
    assert_eq!(err["error"]["kind"], "not_found", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("job \"nosuchjob\" does not exist"),
        "{err}"
    );
}

#[test]
fn status_watch_waits_for_a_job_that_does_not_exist_yet() {
    let env = Env::new();
    let out = env.path("watch.jsonl");
    let watch = env
        .command(&["--json", "status", "later", "--watch", "--interval", "50ms"])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let first = || lines(&out).first().cloned();
    wait_until("the first refresh", LONG, || first().is_some());
    let doc: serde_json::Value = serde_json::from_str(&first().unwrap()).unwrap();
    assert_eq!(
        (&doc["job"], &doc["exists"]),
        (&"later".into(), &false.into()),
        "{doc}"
    );
    assert_eq!(env.tt(&["add", "later", "a"]).code, 0);
    wait_until("a refresh that sees the job", LONG, || {
        lines(&out).iter().any(|l| l.contains("\"exists\":true"))
    });
    signal(&watch, "INT");
    let done = finish(watch, LONG);
    assert_eq!(done.code, 0, "{}", done.err);
}

#[test]
fn init_completions_and_jsonl_from_stdin() {
    let env = Env::new();
    let init = env.json(&["init"]);
    assert_eq!(init["backend"], "sqlite");
    assert!(env.path("tasktrack.db").exists());
    let lines = "{\"id\":\"a\",\"data\":{\"n\":1},\"priority\":5}\nb\n\n{\"id\":\"c\",\"max_attempts\":1}\n";
    let added = env.tt_stdin(&["--json", "add", "jl", "-"], lines);
    assert_eq!(added.code, 0, "{}", added.err);
    assert_eq!(added.json()["created"], 3);
    let a = env.task("jl", "a");
    assert_eq!(
        (a["data"]["n"].as_i64(), a["priority"].as_i64()),
        (Some(1), Some(5))
    );
    assert_eq!(env.task("jl", "c")["max_attempts"], 1);
    let csv = env.tt(&["export", "jl", "--format", "csv"]);
    assert_eq!(csv.out.lines().count(), 4);
    let comp = env.tt(&["completions", "zsh"]);
    assert_eq!(comp.code, 0);
    assert!(comp.out.contains("tasktrack"));
}

#[test]
fn help_does_not_print_the_store_url_from_the_environment() {
    let env = Env::new();
    let done: support::Done = env
        .command(&["--help"])
        .env("TASKTRACK_STORE", "postgres://app:s3cret@db/tasks")
        .output()
        .unwrap()
        .into();
    assert_eq!(done.code, 0, "{}", done.err);
    assert!(done.out.contains("TASKTRACK_STORE"), "{}", done.out);
    assert!(!done.out.contains("s3cret"), "{}", done.out);
}

#[test]
fn id_files_name_the_line_that_is_not_utf8_and_ignore_a_byte_order_mark() {
    let env = Env::new();
    let bad = env.path("latin1.txt");
    std::fs::write(&bad, b"ok\nna\xefve\n").unwrap();
    let done = env.tt(&["add", "j", "--file", bad.to_str().unwrap()]);
    done.assert_one_line_error(2, "latin1.txt");
    assert!(
        done.err.contains("latin1.txt:2: not valid UTF-8"),
        "the line is named: {}",
        done.err
    );
    assert_eq!(
        env.tt(&["status", "j"]).code,
        4,
        "nothing written, not even the job"
    );

    // A file saved by a Windows editor: a byte order mark, then CRLF lines.
    let bom = env.path("bom.txt");
    std::fs::write(
        &bom,
        b"\xEF\xBB\xBF{\"id\":\"first\",\"priority\":7}\r\nsecond\r\n",
    )
    .unwrap();
    let done = env.tt(&["--json", "add", "w", "--file", bom.to_str().unwrap()]);
    assert_eq!(done.code, 0, "{}", done.err);
    assert_eq!(done.json()["created"], 2);
    assert_eq!(
        env.task("w", "first")["priority"],
        7,
        "the first line is JSON"
    );
    assert_eq!(env.task("w", "second")["id"], "second");
}

#[test]
fn usage_errors_under_json_are_one_json_line() {
    let env = Env::new();
    for args in [
        vec!["--json", "lsit"],
        vec!["--json", "list"],
        vec!["--json", "report", "j", "a"],
        vec!["list", "j", "--json", "--limit", "many"],
    ] {
        let done = env.tt(&args);
        done.assert_one_line_error(2, &args);
        assert_eq!(
            done.error_json()["error"]["kind"],
            "invalid_input",
            "{args:?}"
        );
        assert!(done.out.is_empty(), "{args:?}: {}", done.out);
    }
    // `--json` after `--` belongs to run's command; help stays text.
    let text = env.tt(&["run", "j", "--workers", "x", "--", "cmd", "--json"]);
    assert_eq!(text.code, 2);
    assert!(text.err.starts_with("error:"), "{}", text.err);
    let help = env.tt(&["--json", "--help"]);
    assert_eq!(help.code, 0);
    assert!(help.out.contains("Usage:"), "{}", help.out);
}

/// A stdout that cannot be written (a full disk under `> file`) is exit 1 with a message that
/// names stdout: it read "backend error: cannot write output", as if the store could not write
/// a task's output.
#[cfg(target_os = "linux")]
#[test]
fn a_stdout_that_cannot_be_written_is_named_in_the_error() {
    let env = Env::new();
    assert_eq!(env.tt(&["add", "j", "a"]).code, 0);
    for (args, line) in [
        (
            vec!["list", "j"],
            "tasktrack: backend error: cannot write to stdout: No space left on device (os error 28)",
        ),
        (
            vec!["--json", "list", "j"],
            r#"{"error":{"kind":"backend","message":"backend error: cannot write to stdout: No space left on device (os error 28)"}}"#,
        ),
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let done: Done = env
            .command(&args)
            .stdin(Stdio::null())
            .stdout(full)
            .stderr(Stdio::piped())
            .output()
            .unwrap()
            .into();
        assert_eq!(done.code, 1, "{args:?}: {}", done.err);
        assert_eq!(done.err.trim_end(), line, "{args:?}");
    }
}

/// The `--after` that `list` suggests can be pasted into a shell as printed, also when the id
/// holds a space and a quote (file names do): it was printed bare, and the shell cut it in two.
#[test]
fn the_cursor_list_suggests_can_be_pasted_into_a_shell() {
    let env = Env::new();
    let added = env.tt_stdin(&["add", "j", "-"], "it's a b\nnext\n");
    assert_eq!(added.code, 0, "{}", added.err);
    let first = env.tt(&["list", "j", "--limit", "1"]);
    assert_eq!(first.code, 0, "{}", first.err);
    let suggested = first
        .err
        .trim_end()
        .strip_prefix("more tasks match: continue with ")
        .unwrap_or_else(|| panic!("no cursor: {}", first.err));
    assert!(suggested.ends_with(":it'\\''s a b'"), "{suggested}");
    let pasted: Done = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("\"$0\" --json list j --limit 1 {suggested}"))
        .arg(env!("CARGO_BIN_EXE_tasktrack"))
        .env("TASKTRACK_STORE", &env.url)
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .into();
    assert_eq!(pasted.code, 0, "{}", pasted.err);
    assert_eq!(pasted.json()[0]["id"], "next", "{}", pasted.out);
}

#[test]
fn report_says_it_needs_success_or_failure() {
    let env = Env::new();
    let done = env.tt(&["report", "j", "a"]);
    assert_eq!(done.code, 2);
    assert!(
        done.err.contains("--success|--failure"),
        "both choices are named: {}",
        done.err
    );
    assert_eq!(
        env.tt(&["report", "j", "a", "--success", "--failure"]).code,
        2
    );
}

#[test]
fn logs_on_a_pipe_have_no_colour_codes() {
    let env = Env::file_store();
    let first = env.tt(&["add", "j", "a", "b"]);
    assert_eq!(first.code, 0);
    assert!(
        !first.err.contains("WARN"),
        "a new job's first write warns of nothing: {}",
        first.err
    );
    let task = env.path("store/jobs/j/tasks/a.json");
    std::fs::write(&task, "{garbage").unwrap();
    // Claims log the damaged file they skip (a list names it in its result instead).
    let done = env.tt(&["run", "j", "--", "true"]);
    assert!(
        done.err.contains("corrupt"),
        "a warning is logged: {}",
        done.err
    );
    assert!(
        !done.err.contains('\u{1b}'),
        "no ANSI codes: {:?}",
        done.err
    );
}

/// With stdout and stderr on a pipe whose reader went away (`run … 2>&1 | head`), a log line
/// (here the file store's warning about a damaged task file, met by every claim) is dropped:
/// the subscriber reported the failed write with `eprintln!`, which panicked in the worker that
/// logged, left its task in progress and made the run exit 1.
#[cfg(all(unix, feature = "all-backends"))]
#[test]
fn logs_on_a_pipe_whose_reader_went_away_change_nothing() {
    use std::os::fd::OwnedFd;
    let env = Env::file_store();
    assert_eq!(env.tt(&["add", "j", "a", "b"]).code, 0);
    std::fs::write(env.path("store/jobs/j/tasks/b.json"), "{garbage").unwrap();
    // The write end of a pipe whose only reader has exited: every write fails with EPIPE.
    let mut reader = std::process::Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe: OwnedFd = reader.stdin.take().unwrap().into();
    reader.wait().unwrap();
    let status = env
        .command(&["--json", "run", "j", "--", "true", "{id}"])
        .stdin(Stdio::null())
        .stdout(pipe.try_clone().unwrap())
        .stderr(pipe)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(env.task("j", "a")["status"], "succeeded");
}

#[test]
fn a_duration_below_the_stores_millisecond_is_refused_not_stored_as_zero() {
    let env = Env::new();
    assert_eq!(
        env.tt(&["job", "set", "j", "--backoff", "2s..1m", "--lease", "1m"])
            .code,
        0
    );
    for args in [
        vec!["job", "set", "j", "--backoff", "1ns..2ns"],
        vec!["job", "set", "j", "--backoff", "500us"],
        vec!["job", "set", "j", "--backoff", "0s..999us"],
        vec!["job", "set", "j", "--lease", "500us"],
        vec!["run", "j", "--lease", "1ns", "--", "true", "{id}"],
    ] {
        let done = env.tt(&args);
        done.assert_one_line_error(2, &args);
        assert!(
            done.err.contains("1ms"),
            "{args:?}: the unit is named: {}",
            done.err
        );
        assert!(done.out.is_empty(), "{args:?}: {}", done.out);
    }
    let job = env.json(&["job", "show", "j"]);
    assert_eq!(
        (&job["backoff"]["initial_ms"], &job["backoff"]["max_ms"]),
        (&serde_json::json!(2_000), &serde_json::json!(60_000)),
        "unchanged: {job}"
    );
    assert_eq!(job["lease_ms"], 60_000, "unchanged: {job}");
    // Zero stays what it says: no backoff.
    assert_eq!(env.tt(&["job", "set", "j", "--backoff", "0s"]).code, 0);
    let done = env.tt(&["job", "set", "j", "--backoff", "1ms..2ms"]);
    assert_eq!(done.code, 0, "{}", done.err);
    assert!(done.out.contains("1ms..2ms"), "{}", done.out);
}

/// A damaged record, as docs/cli.md ("Errors") tells it: `list` and `export` show the rest of
/// the job and name the damaged task on stderr, with its column, exiting 1 (under `-q` too: the
/// output is incomplete); `retry --failed`-style commands report it; `delete JOB ID` removes it
/// (whatever its lease says: `testkit::damaged`), after which the job reads cleanly again.
#[test]
fn a_damaged_task_is_named_and_can_be_deleted() {
    let env = Env::new();
    assert_eq!(env.tt(&["add", "j", "a", "b"]).code, 0);
    let db = rusqlite::Connection::open(env.path("tasktrack.db")).unwrap();
    db.execute(
        "UPDATE tasktrack_task SET data = '{ damaged' WHERE job = 'j' AND id = 'a'",
        [],
    )
    .unwrap();

    let listed = env.tt(&["list", "j"]);
    assert_eq!(listed.code, 1, "{}", listed.err);
    assert!(
        listed.out.contains('b'),
        "the rest is listed: {}",
        listed.out
    );
    let named = "tasktrack: task j/a left out: corrupt record at ";
    assert!(
        listed.err.contains(named) && listed.err.contains("column data"),
        "the damaged task is named with its column: {}",
        listed.err
    );
    assert!(
        listed.err.contains("tasktrack delete j ID"),
        "{}",
        listed.err
    );

    let exported = env.tt(&["-q", "export", "j"]);
    assert_eq!(exported.code, 1, "{}", exported.err);
    assert_eq!(exported.out.lines().count(), 1, "b alone: {}", exported.out);
    assert_eq!(
        exported.err.lines().count(),
        1,
        "-q still names it: {}",
        exported.err
    );
    assert!(exported.err.starts_with(named), "{}", exported.err);

    let json = env.tt(&["--json", "list", "j"]);
    assert_eq!(json.code, 1);
    assert_eq!(support::sorted_ids(&json.json()), ["b"]);
    assert_eq!(
        json.error_json()["error"]["kind"],
        "corrupt",
        "{}",
        json.err
    );

    let deleted = env.tt(&["delete", "j", "a"]);
    assert_eq!(deleted.code, 0, "{}", deleted.err);
    assert_eq!(env.tt(&["show", "j", "a"]).code, 4);
    let list = env.json(&["list", "j"]);
    assert_eq!(support::sorted_ids(&list), ["b"]);
    let status = env.json(&["status", "j"]);
    assert_eq!(status["total"], 1, "{status}");
    assert_eq!(status["by_status"]["pending"], 1, "{status}");
}

/// `retry --failed` tries the damaged tasks its listing names too: each is reported (exit 1),
/// and the healthy ones are retried all the same.
#[test]
fn retry_failed_reports_a_damaged_task_and_retries_the_others() {
    let env = Env::new();
    assert_eq!(env.tt(&["job", "set", "j", "--max-attempts", "1"]).code, 0);
    assert_eq!(env.tt(&["add", "j", "a", "b"]).code, 0);
    assert_eq!(env.tt(&["-q", "run", "j", "--", "false"]).code, 3);
    let db = rusqlite::Connection::open(env.path("tasktrack.db")).unwrap();
    db.execute(
        "UPDATE tasktrack_task SET data = '{ damaged' WHERE job = 'j' AND id = 'a'",
        [],
    )
    .unwrap();
    let retried = env.tt(&["--json", "retry", "j", "--failed"]);
    assert_eq!(retried.code, 1, "{}", retried.err);
    let doc = retried.json();
    assert_eq!(doc["ids"], serde_json::json!(["b"]), "{doc}");
    assert_eq!(doc["refused"][0]["id"], "a", "{doc}");
    assert_eq!(doc["refused"][0]["kind"], "corrupt", "{doc}");
    assert_eq!(env.task("j", "b")["status"], "pending");
}
