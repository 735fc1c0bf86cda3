#![allow(clippy::unwrap_used, clippy::expect_used)]
//! In-process command tests: every command against one shared memory store, with captured output.
//! (The end-to-end tests in `e2e_*.rs` drive the real binary on SQLite.)

mod support;

use clap::Parser;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use support::{Done, run_script, sorted_ids};
use tasktrack::{MemoryStore, Store};
use tasktrack_cli::args::Cli;
use tasktrack_cli::output::Output;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn tt(store: &Arc<dyn Store>, args: &[&str]) -> Done {
    tt_url(store, "memory://", args).await
}

/// As [`tt`], with the store opened from `url` as far as the command knows.
async fn tt_url(store: &Arc<dyn Store>, url: &str, args: &[&str]) -> Done {
    let cli =
        Cli::try_parse_from(std::iter::once("tasktrack").chain(args.iter().copied())).unwrap();
    let (out, err) = (Buf::default(), Buf::default());
    let output = Output::new(
        cli.json,
        cli.quiet,
        cli.verbose,
        Box::new(out.clone()),
        Box::new(err.clone()),
    );
    let code = tasktrack_cli::execute_with(store.clone(), url, cli.command, output).await;
    Done {
        code: i32::from(code),
        out: out.text(),
        err: err.text(),
    }
}

/// A task's record (`show --json`).
async fn task(store: &Arc<dyn Store>, job: &str, id: &str) -> Value {
    tt(store, &["--json", "show", job, id]).await.json()
}

fn store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::in_memory())
}

#[tokio::test]
async fn add_list_show_status_have_stable_json_shapes() {
    let s = store();
    let r = tt(
        &s,
        &["--json", "add", "j", "a", "b", "c", "--data", r#"{"k":1}"#],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.json()["created"], 3);
    let r = tt(&s, &["--json", "add", "j", "a", "d"]).await;
    assert_eq!(
        (r.json()["created"].as_u64(), r.json()["existing"].as_u64()),
        (Some(1), Some(1))
    );

    let r = tt(&s, &["--json", "list", "j"]).await;
    let list = r.json();
    assert_eq!(list.as_array().map(Vec::len), Some(4));
    assert_eq!(list[0]["status"], "pending");
    assert_eq!(list[0]["status_code"], 0);

    // Paging under --json: stdout is the bare array, the cursor a JSON line on stderr.
    let r = tt(&s, &["--json", "list", "j", "--limit", "3"]).await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(3));
    let cursor: Value = serde_json::from_str(r.err.trim()).unwrap();
    let next = cursor["next"].as_str().unwrap();
    let r = tt(
        &s,
        &["--json", "list", "j", "--limit", "3", "--after", next],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.json().as_array().map(Vec::len), Some(1), "the rest");
    assert!(r.err.is_empty(), "no cursor after the last page: {}", r.err);
    let r = tt(&s, &["-q", "list", "j", "--limit", "2"]).await;
    assert!(
        r.err
            .starts_with("more tasks match: continue with --after "),
        "the cursor is a result, printed under -q too: {}",
        r.err
    );

    assert_eq!(task(&s, "j", "a").await["data"]["k"], 1);
    tt(&s, &["show", "j", "nope"])
        .await
        .assert_one_line_error(4, "show j nope");

    let r = tt(&s, &["--json", "status", "j"]).await;
    let st = r.json();
    assert_eq!(st["by_status"]["pending"], 4);
    assert_eq!(st["total"], 4);
    let r = tt(&s, &["status"]).await;
    assert!(r.out.contains("j") && r.out.contains('%'), "{}", r.out);
    let r = tt(&s, &["--json", "jobs"]).await;
    assert_eq!(r.json()[0]["job"], "j");
}

#[tokio::test]
async fn invalid_input_is_one_line_exit_2_and_writes_nothing() {
    let s = store();
    let dir = tempfile::tempdir().unwrap();
    let bad_json = dir.path().join("bad.jsonl");
    std::fs::write(&bad_json, "{\"id\":\"ok\"}\n{\"id\": \"broken\"\n").unwrap();
    let ctrl = dir.path().join("ctrl.txt");
    std::fs::write(&ctrl, "fine\nbad\u{1b}id\n").unwrap();
    let good = dir.path().join("good.txt");
    std::fs::write(&good, "fine\n").unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["add", "j", "ok", ""],
        vec!["add", "j", "ok", "a\u{7}b"],
        vec!["add", "j", "--file", bad_json.to_str().unwrap()],
        vec!["add", "j", "--file", ctrl.to_str().unwrap()],
        vec!["add", "j", "x", "--data", "{nope"],
        // Stdin and a file at once: one of them would be ignored.
        vec!["add", "j", "-", "--file", good.to_str().unwrap()],
        vec!["list", "j", "--status", "pending,bogus"],
        vec!["run", "j", "--lease", "0s", "--", "true"],
        vec!["job", "set", "j", "--lease", "0s"],
        vec!["job", "set", "j", "--stages", "a,,b"],
        vec!["purge", "--older-than", "1d", "--status", "pending"],
        vec!["export", "j", "--format", "xml"],
    ];
    for args in cases {
        let r = tt(&s, &args).await;
        r.assert_one_line_error(2, &args);
        assert!(
            r.err.starts_with("tasktrack: invalid input"),
            "{args:?}: {}",
            r.err
        );
    }
    let r = tt(&s, &["status", "j"]).await;
    assert_eq!(
        r.code, 4,
        "nothing was written, not even the job: {}",
        r.err
    );
}

#[tokio::test]
async fn run_retries_then_exhausts_and_retry_then_succeeds() {
    let s = store();
    assert_eq!(
        tt(
            &s,
            &[
                "job",
                "set",
                "r",
                "--max-attempts",
                "2",
                "--backoff",
                "none"
            ]
        )
        .await
        .code,
        0
    );
    let ids: Vec<String> = (1..=20).map(|i| format!("t{i}")).collect();
    let mut args = vec!["add", "r"];
    args.extend(ids.iter().map(String::as_str));
    assert_eq!(tt(&s, &args).await.code, 0);
    let script = r#"case "$1" in *7) echo "boom $1" >&2; exit 4;; esac; echo "{\"done\":\"$1\",\"attempt\":$TASKTRACK_ATTEMPT}""#;
    let run = run_script(&["--json", "run", "r", "--workers", "4"], script, &["{id}"]);
    let r = tt(&s, &run).await;
    assert_eq!(r.code, 3, "{}\n{}", r.out, r.err);
    let summary = r.json();
    assert_eq!(summary["summary"]["succeeded"], 18);
    assert_eq!(summary["summary"]["exhausted"], 2);
    assert_eq!(
        summary["summary"]["failed"], 2,
        "each failing task was retried once in the same run"
    );

    assert_eq!(task(&s, "r", "t3").await["output"]["done"], "t3");
    let t = task(&s, "r", "t17").await;
    assert_eq!(t["status"], "exhausted");
    assert_eq!(t["error"]["kind"], "exit");
    assert_eq!(t["error"]["message"], "exited with code 4");
    assert_eq!(t["error"]["detail"], "boom t17\n");
    assert_eq!(t["history"].as_array().map(Vec::len), Some(2));

    let r = tt(&s, &["--json", "list", "r", "--status", "exhausted"]).await;
    assert_eq!(sorted_ids(&r.json()), ["t17", "t7"]);
    let r = tt(&s, &["--json", "retry", "r", "--failed"]).await;
    assert_eq!(r.json()["retried"], 2, "{}", r.out);

    let r = tt(
        &s,
        &["--json", "run", "r", "--", "sh", "-c", "echo plain text"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.json()["summary"]["succeeded"], 2);
    let t7 = task(&s, "r", "t7").await;
    assert_eq!(t7["output"], serde_json::json!({"stdout": "plain text\n"}));
    assert_eq!(t7["status"], "succeeded");
    let r = tt(&s, &["--json", "status", "r"]).await;
    assert_eq!(r.json()["by_status"]["succeeded"], 20);
}

#[tokio::test]
async fn ignored_tasks_are_skipped_and_report_counts() {
    let s = store();
    tt(&s, &["add", "i", "a", "b", "c"]).await;
    let r = tt(
        &s,
        &["--json", "ignore", "i", "b", "--reason", "broken input"],
    )
    .await;
    assert_eq!(r.json()["ignored"], 1);
    let r = tt(&s, &["--json", "ignore", "i", "zz"]).await;
    assert_eq!(r.code, 4, "missing id reported: {}", r.err);
    let r = tt(&s, &["--json", "run", "i", "--", "echo", "{id}"]).await;
    assert_eq!(r.code, 0);
    assert_eq!(r.json()["summary"]["processed"], 2);
    let b = task(&s, "i", "b").await;
    assert_eq!(
        (b["status"].as_str(), b["attempts"].as_u64()),
        (Some("ignored"), Some(0))
    );

    let r = tt(
        &s,
        &[
            "--json",
            "report",
            "i",
            "d",
            "--failure",
            "--detail",
            "bad row",
        ],
    )
    .await;
    assert_eq!(r.json()["status"], "failed");
    let r = tt(&s, &["--json", "report", "i", "e", "--success"]).await;
    assert_eq!(r.json()["status"], "succeeded");
}

#[tokio::test]
async fn substitution_env_and_a_missing_program() {
    let s = store();
    tt(&s, &["add", "sub", "x 1", "--data", r#""payload""#]).await;
    let script = r#"printf '{"args":"%s|%s|%s|%s","env":"%s|%s|%s|%s"}' "$1" "$2" "$3" "$4" "$TASKTRACK_JOB" "$TASKTRACK_ID" "$TASKTRACK_ATTEMPT" "$TASKTRACK_DATA""#;
    let placeholders = ["{id}", "{job}", "{attempt}", "{data}"];
    let r = tt(&s, &run_script(&["run", "sub"], script, &placeholders)).await;
    assert_eq!(r.code, 0, "{}", r.err);
    let t = task(&s, "sub", "x 1").await;
    assert_eq!(t["output"]["args"], "x 1|sub|1|payload");
    assert_eq!(t["output"]["env"], "sub|x 1|1|payload");

    tt(&s, &["add", "miss", "a"]).await;
    let r = tt(
        &s,
        &["--json", "run", "miss", "--", "/definitely/not/a/program"],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.err);
    assert!(r.err.contains("cannot start"), "{}", r.err);
    let summary = &r.json()["summary"];
    assert_eq!(
        (
            summary["attempts"].as_u64(),
            summary["released"].as_u64(),
            summary["processed"].as_u64()
        ),
        (Some(0), Some(1), Some(0)),
        "no command ran: {summary}"
    );
    let t = task(&s, "miss", "a").await;
    assert_eq!(
        (t["status"].as_str(), t["attempts"].as_u64()),
        (Some("pending"), Some(0)),
        "released, not counted"
    );
}

#[tokio::test]
async fn run_of_an_unknown_job_is_not_found_and_limit_stops_early() {
    let s = store();
    let r = tt(&s, &["run", "ghost", "--", "true"]).await;
    assert_eq!(r.code, 4, "{}", r.err);
    tt(&s, &["add", "lim", "a", "b", "c", "d"]).await;
    let r = tt(
        &s,
        &[
            "--json",
            "run",
            "lim",
            "--limit",
            "3",
            "--workers",
            "2",
            "--",
            "true",
        ],
    )
    .await;
    assert_eq!(r.json()["summary"]["processed"], 3, "{}", r.out);
}

#[tokio::test]
async fn delete_purge_export_and_completions() {
    let s = store();
    tt(&s, &["add", "e", "a", "b,c", "q\"uote"]).await;
    tt(&s, &["run", "e", "--", "echo", "{\"n\":1}"]).await;
    let r = tt(&s, &["export", "e", "--format", "csv"]).await;
    let lines: Vec<&str> = r.out.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.out);
    assert!(lines[0].starts_with("job,id,status,status_code"));
    assert!(
        r.out.contains("\"b,c\"") && r.out.contains("\"q\"\"uote\""),
        "{}",
        r.out
    );
    let r = tt(&s, &["export", "e"]).await;
    for line in r.out.lines() {
        let t: Value = serde_json::from_str(line).unwrap();
        assert_eq!(t["status"], "succeeded");
    }
    let r = tt(&s, &["--json", "delete", "e", "a"]).await;
    assert_eq!(r.json()["deleted"], 1);
    let r = tt(&s, &["--json", "purge", "e", "--older-than", "0s"]).await;
    assert_eq!(r.json()["purged"], 2);
    let r = tt(&s, &["--json", "delete", "e", "--all"]).await;
    assert_eq!(r.json()["job_removed"], true);
    let r = tt(&s, &["completions", "bash"]).await;
    assert!(r.out.contains("tasktrack"), "{}", r.out);
}

#[tokio::test]
async fn pipelines_run_stage_by_stage() {
    let s = store();
    assert_eq!(
        tt(&s, &["job", "set", "p", "--stages", "fetch,parse"])
            .await
            .code,
        0
    );
    tt(&s, &["add", "p", "x"]).await;
    let print_stage = "echo \"$TASKTRACK_STAGE\"";
    let run = run_script(
        &["--json", "run", "p", "--stage", "fetch"],
        print_stage,
        &[],
    );
    let r = tt(&s, &run).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.json()["summary"]["advanced"], 1);
    let t = task(&s, "p", "x").await;
    assert_eq!(
        (t["status"].as_str(), t["stage"].as_str()),
        (Some("pending"), Some("parse"))
    );
    let st = tt(&s, &["--json", "status", "p"]).await.json();
    assert_eq!(st["by_stage"]["parse"]["pending"], 1);
    let r = tt(&s, &["run", "p", "--stage", "nope", "--", "true"]).await;
    assert_eq!(r.code, 2, "unknown stage: {}", r.err);
    let r = tt(&s, &run_script(&["--json", "run", "p"], print_stage, &[])).await;
    assert_eq!(r.json()["summary"]["succeeded"], 1);
    let t = task(&s, "p", "x").await;
    assert_eq!(t["output"]["stdout"], "parse\n");
}

#[tokio::test]
async fn bulk_commands_handle_each_id_once() {
    let s = store();
    tt(&s, &["report", "d", "a", "--failure"]).await;
    tt(&s, &["report", "d", "b", "--failure"]).await;
    tt(&s, &["add", "d", "c"]).await;
    // `a` is named and also selected by --failed: retried and counted once, in the order given.
    let r = tt(&s, &["--json", "retry", "d", "c", "a", "c", "--failed"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    let doc = r.json();
    assert_eq!(doc["retried"], 3, "{doc}");
    assert_eq!(doc["ids"], serde_json::json!(["c", "a", "b"]));
    // A second delete of the same id would be "not found" (exit 4).
    let r = tt(&s, &["--json", "delete", "d", "a", "a"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.json()["deleted"], 1);
}

#[tokio::test]
async fn init_never_prints_the_store_password() {
    let s = store();
    let url = "postgres://app:s3cret@db:5432/tasks";
    let r = tt_url(&s, url, &["--json", "init"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    let doc = r.json();
    assert_eq!(doc["store"], "postgres://app:***@db:5432/tasks");
    assert_eq!(doc["location"], "postgres://app:***@db:5432/tasks");
    let r = tt_url(&s, url, &["init"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.out.contains("postgres://app:***@db:5432/tasks"),
        "{}",
        r.out
    );
    assert!(!r.out.contains("s3cret") && !r.err.contains("s3cret"));
}

/// `sqlite://:memory:` is a database in the process, not a file named `:memory:` in the
/// current directory (which `init` used to print as its location).
#[tokio::test]
async fn init_of_an_in_memory_sqlite_store_names_no_file() {
    let s = store();
    let r = tt_url(&s, "sqlite://:memory:", &["--json", "init"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.json()["location"], ":memory:");
}

/// A negative priority is given as `--priority -5`: clap refused it, with a tip to write
/// `-- -5`, which would have made `-5` a task id.
#[tokio::test]
async fn a_negative_priority_is_taken_as_a_value() {
    let s = store();
    let r = tt(&s, &["add", "neg", "a", "--priority", "-5", "b"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    for id in ["a", "b"] {
        assert_eq!(task(&s, "neg", id).await["priority"], -5, "{id}");
    }
}

/// `run` and `list` flags are checked before anything runs: a huge `--workers` (each worker is
/// started up front: it exhausted memory and aborted with a backtrace), and a stage no job can
/// have (under `--follow`, with no job to check it against, the claim refused it only once the
/// run had started, after printing its summary).
#[tokio::test]
async fn run_and_list_flags_are_checked_before_anything_runs() {
    let s = store();
    tt(&s, &["add", "flags", "a"]).await;
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "run",
            "flags",
            "--workers",
            "18446744073709551615",
            "--",
            "true",
            "{id}",
        ],
        vec!["run", "flags", "--workers", "10001", "--", "true", "{id}"],
        vec![
            "run", "nojob", "--follow", "--stage", "a\u{1}", "--", "true", "{id}",
        ],
        vec!["list", "flags", "--stage", ""],
    ];
    for args in cases {
        let r = tt(&s, &args).await;
        r.assert_one_line_error(2, &args);
        assert!(r.out.is_empty(), "{args:?}: {}", r.out);
    }
    let r = tt(
        &s,
        &["run", "flags", "--stage", "load", "--", "true", "{id}"],
    )
    .await;
    r.assert_one_line_error(2, "a stage of a job without stages");
    assert!(
        r.err
            .ends_with("job \"flags\" has no stage \"load\" (it has no stages)\n"),
        "{}",
        r.err
    );
    let t = task(&s, "flags", "a").await;
    assert_eq!(
        (&t["status"], &t["attempts"]),
        (&json!("pending"), &json!(0))
    );
}

/// A task's error comes from its command's stderr (or whoever reported it): `show` and `list`
/// print its control characters as escapes, so that a colour code, a terminal title sequence,
/// a clear-screen or a carriage return cannot rewrite the user's screen. JSON is unchanged.
#[tokio::test]
async fn show_and_list_print_control_characters_in_errors_as_escapes() {
    let s = store();
    tt(&s, &["job", "set", "esc", "--max-attempts", "1"]).await;
    tt(&s, &["add", "esc", "a"]).await;
    let r = tt(
        &s,
        &run_script(
            &["run", "esc"],
            "printf 'bad\\033]0;title\\007\\033[2J\\rend\\n' >&2; exit 1",
            &["{id}"],
        ),
    )
    .await;
    assert_eq!(r.code, 3, "{}", r.err);
    tt(
        &s,
        &[
            "report",
            "esc",
            "b",
            "--failure",
            "--detail",
            "red\u{1b}[31m",
        ],
    )
    .await;
    let show = tt(&s, &["show", "esc", "a"]).await;
    assert!(
        show.out
            .contains("bad\\u{1b}]0;title\\u{7}\\u{1b}[2J\\rend"),
        "{}",
        show.out
    );
    let list = tt(&s, &["list", "esc"]).await;
    assert!(list.out.contains("red\\u{1b}[31m"), "{}", list.out);
    for text in [
        &show.out,
        &list.out,
        &tt(&s, &["show", "esc", "b"]).await.out,
    ] {
        assert!(
            !text.contains(['\u{1b}', '\u{7}', '\r']),
            "raw control characters: {text:?}"
        );
    }
    let t = task(&s, "esc", "a").await;
    assert_eq!(
        t["error"]["detail"],
        "bad\u{1b}]0;title\u{7}\u{1b}[2J\rend\n"
    );
}

/// An age reaching before 1970 purges nothing (no task is older), and `older_than` stays an
/// RFC 3339 time: it was `@-3155758172893074939ms` for `99999999y`, and a year before 0 for
/// `3000y`.
#[tokio::test]
async fn purge_older_than_an_age_before_1970_is_a_valid_time() {
    let s = store();
    tt(&s, &["report", "old", "a", "--success"]).await;
    for age in ["3000y", "99999999y"] {
        let r = tt(&s, &["--json", "purge", "--older-than", age]).await;
        assert_eq!(r.code, 0, "{age}: {}", r.err);
        let doc = r.json();
        assert_eq!(
            (&doc["purged"], &doc["older_than"]),
            (&json!(0), &json!("1970-01-01T00:00:00.000Z")),
            "{age}: {doc}"
        );
    }
    assert_eq!(task(&s, "old", "a").await["status"], "succeeded");
}

/// A memory store that can be made to fail the ways real stores do, to see that the CLI says so.
#[derive(Debug)]
struct Faulty {
    inner: MemoryStore,
    /// `release` fails.
    release_fails: AtomicBool,
    /// `counts` fails once a task has succeeded.
    counts_fail_after_success: AtomicBool,
    /// `counts` fails.
    counts_fail: AtomicBool,
    succeeded: AtomicBool,
    /// A success whose output (as JSON text) is longer is refused as invalid input, as DynamoDB
    /// refuses an item over 400 KB.
    output_limit: Option<usize>,
    /// How many successes (hand-offs included) are written, then answered with a connection
    /// error, as when a connection breaks after the commit.
    answers_to_lose: AtomicUsize,
    /// How many claims are granted, then answered with a connection error.
    claim_answers_to_lose: AtomicUsize,
    /// How many `counts` calls, once a task has succeeded, find the store unreachable.
    counts_unavailable_after_success: AtomicUsize,
    /// How many `list` calls meet a damaged record.
    lists_corrupt: AtomicUsize,
    /// How many releases find the store unreachable (nothing released).
    releases_unavailable: AtomicUsize,
    /// How many failures find the store unreachable (nothing written).
    failures_unavailable: AtomicUsize,
    /// Every failure is refused as invalid input.
    refuse_failures: AtomicBool,
    /// Heartbeats are never answered.
    heartbeat_hangs: AtomicBool,
    /// Recording a failure panics for leases held by this owner (a bug in the middle of a task).
    fail_panics_for: Mutex<Option<String>>,
}

impl Faulty {
    fn new() -> Self {
        Faulty {
            inner: MemoryStore::in_memory(),
            release_fails: Default::default(),
            counts_fail_after_success: Default::default(),
            counts_fail: Default::default(),
            succeeded: Default::default(),
            output_limit: None,
            answers_to_lose: Default::default(),
            claim_answers_to_lose: Default::default(),
            counts_unavailable_after_success: Default::default(),
            lists_corrupt: Default::default(),
            releases_unavailable: Default::default(),
            failures_unavailable: Default::default(),
            refuse_failures: Default::default(),
            heartbeat_hangs: Default::default(),
            fail_panics_for: Default::default(),
        }
    }

    /// A store that refuses outputs over `limit` bytes.
    fn refusing_outputs_over(limit: usize) -> Self {
        Faulty {
            output_limit: Some(limit),
            ..Faulty::new()
        }
    }
}

mod faulty {
    use super::Faulty;
    use serde_json::Value;
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Duration;
    use tasktrack::*;

    impl Faulty {
        /// `answer`, or the connection error that replaces it while `to_lose` is above 0.
        fn deliver<T>(to_lose: &AtomicUsize, answer: Result<T>) -> Result<T> {
            let lose = to_lose
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok();
            match answer {
                Ok(_) if lose => Err(Error::Unavailable(
                    "connection reset after the commit (the test)".into(),
                )),
                other => other,
            }
        }

        /// Whether `counter` was above 0 (then it counts one down).
        fn take(counter: &AtomicUsize) -> bool {
            counter
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok()
        }

        fn unavailable<T>() -> Result<T> {
            Err(Error::Unavailable("the store is down (the test)".into()))
        }

        fn check_output(&self, output: &Value) -> Result<()> {
            match (output.to_string().len(), self.output_limit) {
                (n, Some(limit)) if n > limit => Err(Error::InvalidInput(format!(
                    "output of {n} bytes is over this store's limit of {limit}"
                ))),
                _ => Ok(()),
            }
        }
    }

    tasktrack::store_impl! {
        Faulty;
        native {
            fn backend(&self) -> &'static str {
                "faulty"
            }
            async fn release(&self, lease: &Lease, now: Timestamp) -> Result<Task> {
                if self.release_fails.load(SeqCst) {
                    return Err(Error::backend("release broken by the test"));
                }
                if Self::take(&self.releases_unavailable) {
                    return Self::unavailable();
                }
                self.inner.release(lease, now).await
            }
            async fn fail(&self, lease: &Lease, req: &Fail, now: Timestamp) -> Result<Task> {
                let panics = self.fail_panics_for.lock().unwrap().as_deref() == Some(lease.owner.as_str());
                assert!(!panics, "a bug while recording a failure (the test)");
                if self.refuse_failures.load(SeqCst) {
                    return Err(Error::invalid("failure refused by the test"));
                }
                if Self::take(&self.failures_unavailable) {
                    return Self::unavailable();
                }
                self.inner.fail(lease, req, now).await
            }
            async fn heartbeat(&self, lease: &Lease, lease_for: Duration, now: Timestamp) -> Result<Lease> {
                if self.heartbeat_hangs.load(SeqCst) {
                    return std::future::pending().await;
                }
                self.inner.heartbeat(lease, lease_for, now).await
            }
            async fn list(&self, query: &TaskQuery) -> Result<TaskPage> {
                if Self::take(&self.lists_corrupt) {
                    return Err(Error::Corrupt {
                        location: "a task (the test)".into(),
                        message: "damaged".into(),
                    });
                }
                self.inner.list(query).await
            }
            async fn claim_next(&self, job: &JobName, req: &ClaimNext, now: Timestamp) -> Result<Vec<Claimed>> {
                Self::deliver(&self.claim_answers_to_lose, self.inner.claim_next(job, req, now).await)
            }
            async fn counts(&self, job: &JobName) -> Result<Counts> {
                if self.counts_fail.load(SeqCst)
                    || (self.counts_fail_after_success.load(SeqCst) && self.succeeded.load(SeqCst))
                {
                    return Err(Error::backend("counts broken by the test"));
                }
                if self.succeeded.load(SeqCst) && Self::take(&self.counts_unavailable_after_success) {
                    return Self::unavailable();
                }
                self.inner.counts(job).await
            }
            async fn succeed(&self, lease: &Lease, output: Value, now: Timestamp) -> Result<Task> {
                self.check_output(&output)?;
                let task = Self::deliver(&self.answers_to_lose, self.inner.succeed(lease, output, now).await)?;
                self.succeeded.store(true, SeqCst);
                Ok(task)
            }
            async fn succeed_and_claim_next(
                &self,
                lease: &Lease,
                output: Value,
                next: &ClaimNext,
                now: Timestamp,
            ) -> Result<Handoff> {
                self.check_output(&output)?;
                let handoff =
                    Self::deliver(&self.answers_to_lose, self.inner.succeed_and_claim_next(lease, output, next, now).await)?;
                self.succeeded.store(true, SeqCst);
                Ok(handoff)
            }
        }
        via self.inner {
            init() -> ();
            put_job(job: &JobName, spec: &JobSpec, now: Timestamp) -> Job;
            get_job(job: &JobName) -> Job;
            jobs(state: Option<JobState>) -> Vec<Job>;
            set_job_state(job: &JobName, change: JobStateChange, now: Timestamp) -> Job;
            delete_job(job: &JobName, now: Timestamp) -> Deleted;
            create(job: &JobName, tasks: &[NewTask], mode: CreateMode, now: Timestamp) -> Created;
            claim(key: &TaskKey, req: &Claim, now: Timestamp) -> Claimed;
            patch_data(lease: &Lease, patch: &Value, now: Timestamp) -> Task;
            succeed_many(done: &[(Lease, Value)], now: Timestamp) -> Vec<Result<Task>>;
            ignore(key: &TaskKey, req: &Ignore, now: Timestamp) -> Task;
            retry(key: &TaskKey, req: &Retry, now: Timestamp) -> Task;
            report(key: &TaskKey, req: &Report, now: Timestamp) -> Task;
            delete(key: &TaskKey, now: Timestamp) -> ();
            purge(req: &Purge) -> u64;
            get(key: &TaskKey) -> Task;
        }
    }
}

/// A connection that breaks after the store committed a hand-off loses its answer: the success
/// was recorded and the next task claimed, but the worker hears only an error. The run retries,
/// finds its own success recorded (not a lost lease) and the task the hand-off claimed still
/// leased to it, and runs that one next: every task succeeds once, at its first attempt, and
/// the run does not wait for a lease nobody would renew.
#[tokio::test]
async fn a_hand_off_whose_answer_was_lost_is_neither_lost_nor_repeated() {
    let faulty = Arc::new(Faulty::new());
    faulty.answers_to_lose.store(1, SeqCst);
    let s: Arc<dyn Store> = faulty;
    for id in ["a", "b", "c"] {
        tt(&s, &["add", "lost", id]).await;
    }
    let r = tt(
        &s,
        &["--json", "run", "lost", "--lease", "10m", "--", "true"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.err.contains("could not record the outcome yet, retrying"),
        "{}",
        r.err
    );
    let summary = &r.json()["summary"];
    assert_eq!(
        (summary["succeeded"].as_u64(), summary["lost"].as_u64()),
        (Some(3), Some(0)),
        "{summary}"
    );
    assert_succeeded_at_first_attempt(&s, "lost", &["a", "b", "c"]).await;
}

/// Asserts that each task of `job` in `ids` succeeded, at its first attempt.
async fn assert_succeeded_at_first_attempt(s: &Arc<dyn Store>, job: &str, ids: &[&str]) {
    for id in ids {
        let t = task(s, job, id).await;
        assert_eq!(
            (&t["status"], &t["attempts"]),
            (&json!("succeeded"), &json!(1)),
            "{t}"
        );
    }
}

/// The same for a claim: granted, its answer lost. The task stays leased to the worker, which
/// finds it when it looks again and runs it, rather than leave it to wait out its lease.
#[tokio::test]
async fn a_claim_whose_answer_was_lost_is_run_not_left_leased() {
    let faulty = Arc::new(Faulty::new());
    faulty.claim_answers_to_lose.store(1, SeqCst);
    let s: Arc<dyn Store> = faulty;
    for id in ["a", "b"] {
        tt(&s, &["add", "lostclaim", id]).await;
    }
    let args = [
        "--json",
        "run",
        "lostclaim",
        "--lease",
        "10m",
        "--poll",
        "10ms",
        "--",
        "true",
    ];
    let r = tt(&s, &args).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.err.contains("claim failed, retrying"), "{}", r.err);
    assert_eq!(r.json()["summary"]["succeeded"], 2, "{}", r.out);
    assert_succeeded_at_first_attempt(&s, "lostclaim", &["a", "b"]).await;
}

#[tokio::test]
async fn run_warns_when_a_release_fails() {
    let faulty = Arc::new(Faulty::new());
    faulty.release_fails.store(true, SeqCst);
    let s: Arc<dyn Store> = faulty;
    tt(&s, &["add", "rel", "a"]).await;
    let r = tt(
        &s,
        &["--json", "run", "rel", "--", "/definitely/not/a/program"],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.err);
    assert_eq!(
        r.json()["summary"]["released"],
        0,
        "not counted as released"
    );
    assert!(
        r.err
            .contains("rel/a: could not release the lease; the task stays held until it expires: "),
        "{}",
        r.err
    );
    assert!(r.err.contains("release broken by the test"), "{}", r.err);
}

#[tokio::test]
async fn a_task_whose_data_cannot_be_passed_fails_alone_and_the_run_goes_on() {
    let s = store();
    tt(&s, &["add", "sp", "ok"]).await;
    tt(&s, &["add", "sp", "nul", "--data", r#""a\u0000b""#]).await;
    let big = format!("\"{}\"", "x".repeat(200 * 1024));
    tt(&s, &["add", "sp", "big", "--data", &big]).await;
    let run = run_script(&["--json", "run", "sp"], "echo \"$1\" | wc -c", &["{data}"]);
    let r = tt(&s, &run).await;
    assert_eq!(
        r.code, 3,
        "the two bad tasks failed, the run went on: {}",
        r.err
    );
    let doc = r.json();
    assert_eq!(doc["error"], Value::Null, "{doc}");
    let summary = &doc["summary"];
    assert_eq!(
        (
            summary["processed"].as_u64(),
            summary["attempts"].as_u64(),
            summary["succeeded"].as_u64(),
            summary["exhausted"].as_u64(),
            summary["released"].as_u64(),
        ),
        (Some(3), Some(1), Some(1), Some(2), Some(0)),
        "{summary}"
    );
    let ok = task(&s, "sp", "ok").await;
    assert_eq!(ok["status"], "succeeded");
    for (id, why) in [("nul", "NUL byte"), ("big", "size limit")] {
        let t = task(&s, "sp", id).await;
        assert_eq!(
            t["status"], "exhausted",
            "{id}: the same data fails every time: {t}"
        );
        assert_eq!(t["error"]["kind"], "spawn", "{id}: {t}");
        let message = t["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("cannot start the command: "),
            "{id}: {message}"
        );
        let detail = t["error"]["detail"].as_str().unwrap();
        assert!(detail.contains(why), "{id}: {detail}");
        if id == "big" {
            assert!(
                detail.contains("read it from the file named by TASKTRACK_DATA_FILE instead"),
                "{id}: {detail}"
            );
        }
        assert!(
            r.err
                .contains(&format!("sp/{id}: cannot start the command")),
            "{}",
            r.err
        );
    }
}

#[tokio::test]
async fn data_over_the_environment_limit_comes_in_a_file_and_smaller_data_in_the_environment() {
    let s = store();
    let copies = tempfile::tempdir().unwrap();
    // Data text over the limit (as compact JSON), exactly at it, and a few bytes.
    let big = serde_json::json!({ "blob": "x".repeat(200 * 1024) }).to_string();
    // At the limit: the JSON string's text is its content.
    let edge = "y".repeat(128 * 1024 - "TASKTRACK_DATA=".len() - 1);
    for (id, data) in [
        ("big", big.clone()),
        ("edge", Value::String(edge.clone()).to_string()),
        ("small", r#""payload""#.to_string()),
    ] {
        let r = tt(&s, &["add", "df", id, "--data", &data]).await;
        assert_eq!(r.code, 0, "{}", r.err);
    }
    // Copies what the command was given into `$1`: TASKTRACK_DATA to <id>.env, the file of
    // TASKTRACK_DATA_FILE to <id>.file and its path to <id>.path; prints the file's size.
    let script = r#"d="$1/$2"
        if [ -n "${TASKTRACK_DATA+set}" ]; then printf %s "$TASKTRACK_DATA" > "$d.env"; fi
        if [ -n "${TASKTRACK_DATA_FILE+set}" ]; then
            test -z "$TASKTRACK_DATA" || exit 9
            cp "$TASKTRACK_DATA_FILE" "$d.file"
            printf %s "$TASKTRACK_DATA_FILE" > "$d.path"
            wc -c < "$TASKTRACK_DATA_FILE"
        fi"#;
    let copies_dir = copies.path().to_str().unwrap();
    let run = run_script(&["--json", "run", "df"], script, &[copies_dir, "{id}"]);
    let r = tt(&s, &run).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.json()["summary"]["succeeded"], 3, "{}", r.out);

    let copy = |name: &str| std::fs::read_to_string(copies.path().join(name)).ok();
    let t = task(&s, "df", "big").await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["output"], big.len(), "the byte count of the file");
    assert_eq!(copy("big.env"), None, "no TASKTRACK_DATA with the file");
    assert_eq!(copy("big.file").as_deref(), Some(big.as_str()));
    let path = std::path::PathBuf::from(copy("big.path").unwrap());
    assert!(
        path.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("tasktrack-data-")),
        "{}",
        path.display()
    );
    assert!(
        !path.exists(),
        "the file is removed once the command ended: {}",
        path.display()
    );

    assert_eq!(copy("edge.env").as_deref(), Some(edge.as_str()));
    assert_eq!(
        copy("edge.file"),
        None,
        "data at the limit still goes in TASKTRACK_DATA"
    );
    assert_eq!(copy("small.env").as_deref(), Some("payload"));
    assert_eq!(
        copy("small.file"),
        None,
        "no TASKTRACK_DATA_FILE for small data"
    );
}

#[tokio::test]
async fn run_warns_when_the_summary_has_no_counts() {
    let faulty = Arc::new(Faulty::new());
    faulty.counts_fail_after_success.store(true, SeqCst);
    let s: Arc<dyn Store> = faulty;
    tt(&s, &["add", "cnt", "a", "b"]).await;
    // --limit 1: the run ends after one success, without asking for counts on the way.
    let r = tt(&s, &["--json", "run", "cnt", "--limit", "1", "--", "true"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.json()["counts"], Value::Null);
    assert!(
        r.err
            .contains("tasktrack: cannot read cnt's counts for the summary (shown as unknown): ")
            && r.err.contains("counts broken by the test"),
        "{}",
        r.err
    );
}

/// A command whose stdout is JSON nesting deeper than the store takes (which it could write but
/// not read back) fails that task as `unrecordable`; the run goes on to the next task.
#[tokio::test]
async fn an_output_nested_too_deep_fails_that_task_and_the_run_goes_on() {
    let s = store();
    for (id, depth) in [("flat", "1"), ("deep", "65"), ("limit", "64")] {
        let r = tt(&s, &["add", "nest", id, "--data", depth]).await;
        assert_eq!(r.code, 0, "{}", r.err);
    }
    // Prints the task's data many arrays deep around a 1.
    let run = run_script(
        &["--json", "run", "nest", "--workers", "1"],
        "n=$TASKTRACK_DATA; o=; c=; for i in $(seq $n); do o=\"$o[\"; c=\"$c]\"; done; echo \"${o}1${c}\"",
        &[],
    );
    let r = tt(&s, &run).await;
    assert_eq!(r.code, 3, "one task failed, the run went on: {}", r.err);
    let deep = task(&s, "nest", "deep").await;
    assert_eq!(deep["status"], "exhausted", "{deep}");
    assert_eq!(deep["error"]["kind"], "unrecordable", "{deep}");
    let message = deep["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("nests 65 levels deep; the limit is 64"),
        "{message}"
    );
    for id in ["flat", "limit"] {
        assert_eq!(task(&s, "nest", id).await["status"], "succeeded", "{id}");
    }

    // Data and job metadata that deep are refused up front (exit 2), and nothing is written.
    let deep_json = format!("{}1{}", "[".repeat(65), "]".repeat(65));
    let r = tt(&s, &["add", "nest", "x", "y", "--data", &deep_json]).await;
    assert_eq!(r.code, 2, "{}", r.err);
    assert!(r.err.contains("nests 65 levels deep"), "{}", r.err);
    let r = tt(&s, &["show", "nest", "x"]).await;
    assert_eq!(r.code, 4, "x was not added: {}", r.err);
    let r = tt(&s, &["job", "set", "nest", "--meta", &deep_json]).await;
    assert_eq!(r.code, 2, "{}", r.err);
    let r = tt(&s, &["--json", "job", "show", "nest"]).await;
    assert_eq!(
        (r.code, &r.json()["metadata"]),
        (0, &Value::Null),
        "{}",
        r.err
    );
}

#[tokio::test]
async fn an_outcome_the_store_refuses_fails_that_task_and_the_run_goes_on() {
    let s: Arc<dyn Store> = Arc::new(Faulty::refusing_outputs_over(100));
    for (id, words) in [("small", "1"), ("big", "200"), ("also-small", "2")] {
        let r = tt(&s, &["add", "rf", id, "--data", words]).await;
        assert_eq!(r.code, 0, "{}", r.err);
    }
    // Prints as many words as the task's data says: 200 words is over the store's limit.
    let run = run_script(
        &["--json", "run", "rf", "--workers", "1"],
        "for i in $(seq \"$TASKTRACK_DATA\"); do printf 'word '; done",
        &[],
    );
    let r = tt(&s, &run).await;
    assert_eq!(r.code, 3, "one task failed, the run went on: {}", r.err);
    let summary = &r.json()["summary"];
    assert_eq!(
        (summary["succeeded"].as_u64(), summary["exhausted"].as_u64()),
        (Some(2), Some(1)),
        "{summary}"
    );
    let big = task(&s, "rf", "big").await;
    assert_eq!(big["status"], "exhausted", "{big}");
    assert_eq!(big["error"]["kind"], "unrecordable", "{big}");
    let message = big["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("over this store's limit of 100"),
        "{message}"
    );
    assert!(
        r.err
            .contains("rf/big: the store refused this attempt's outcome"),
        "{}",
        r.err
    );
    for id in ["small", "also-small"] {
        let t = task(&s, "rf", id).await;
        assert_eq!(t["status"], "succeeded", "{id}: {t}");
    }
}

/// A release that meets a short outage is retried, as recording an outcome is: the task is not
/// left held until its lease expires.
#[tokio::test]
async fn a_release_rides_out_a_short_outage() {
    let faulty = Arc::new(Faulty::new());
    faulty.releases_unavailable.store(1, SeqCst);
    let s: Arc<dyn Store> = faulty;
    tt(&s, &["add", "relout", "a"]).await;
    let run = ["--json", "run", "relout", "--", "/definitely/not/a/program"];
    let r = tt(&s, &run).await;
    assert_eq!(r.code, 2, "{}", r.err);
    assert!(
        r.err
            .contains("relout/a: could not release the lease yet, retrying"),
        "{}",
        r.err
    );
    assert_eq!(r.json()["summary"]["released"], 1, "{}", r.out);
    let t = task(&s, "relout", "a").await;
    assert_eq!(
        (&t["status"], &t["lease"]),
        (&json!("pending"), &Value::Null)
    );
}

/// `--poll` may be below the 10 ms a worker otherwise waits at least for a retry's backoff.
#[tokio::test]
async fn a_poll_below_10ms_waits_for_a_retry_without_a_panic() {
    let s = store();
    let r = tt(&s, &["job", "set", "p", "--backoff", "30ms"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    tt(&s, &["add", "p", "a"]).await;
    // Fails at its first attempt, succeeds at the second, after the backoff.
    let run = run_script(
        &["--json", "run", "p", "--poll", "5ms"],
        "[ \"$1\" -gt 1 ]",
        &["{attempt}", "{id}"],
    );
    let r = tt(&s, &run).await;
    assert_eq!(r.code, 0, "{}", r.err);
    let summary = &r.json()["summary"];
    assert_eq!(
        (summary["failed"].as_u64(), summary["succeeded"].as_u64()),
        (Some(1), Some(1)),
        "{summary}"
    );
}

/// A placeholder's value is never read for placeholders again: an id `{data}` is that text.
#[tokio::test]
async fn a_placeholder_value_is_passed_as_it_is() {
    let s = store();
    let r = tt(
        &s,
        &["add", "ph", "{data}", "--data", r#""x{attempt}{id}""#],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    let script = r#"printf '{"args":"%s|%s"}' "$1" "$2""#;
    let r = tt(&s, &run_script(&["run", "ph"], script, &["{id}", "{data}"])).await;
    assert_eq!(r.code, 0, "{}", r.err);
    let t = task(&s, "ph", "{data}").await;
    assert_eq!(t["output"]["args"], "{data}|x{attempt}{id}", "{t}");
}

/// A program name that a task makes empty (`{data}` first, the task without data) is that
/// task's failure, not the program's: the run goes on with the others.
#[tokio::test]
async fn a_program_name_that_comes_out_empty_fails_that_task_alone() {
    let s = store();
    tt(&s, &["add", "ep", "nodata"]).await;
    tt(&s, &["add", "ep", "ok", "--data", r#""true""#]).await;
    let r = tt(&s, &["--json", "run", "ep", "--", "{data}", "{id}"]).await;
    assert_eq!(r.code, 3, "{}", r.err);
    let summary = &r.json()["summary"];
    assert_eq!(
        (
            summary["succeeded"].as_u64(),
            summary["exhausted"].as_u64(),
            summary["released"].as_u64()
        ),
        (Some(1), Some(1), Some(0)),
        "{summary}"
    );
    let t = task(&s, "ep", "nodata").await;
    assert_eq!(
        (&t["status"], &t["error"]["kind"]),
        (&json!("exhausted"), &json!("spawn")),
        "{t}"
    );
    let message = t["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the program name \"{data}\" is empty for this task"),
        "{message}"
    );
}

/// Looking for more work meets a store outage: retried after a pause, as recording an outcome
/// is, not an error that ends the run.
#[tokio::test]
async fn an_outage_while_looking_for_more_tasks_is_ridden_out() {
    let faulty = Arc::new(Faulty::new());
    faulty.counts_unavailable_after_success.store(2, SeqCst);
    let s: Arc<dyn Store> = faulty;
    tt(&s, &["add", "cout", "a"]).await;
    let r = tt(&s, &["run", "cout", "--poll", "10ms", "--", "true", "{id}"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.err
            .contains("could not count the tasks left, retrying: store unavailable"),
        "{}",
        r.err
    );
}

/// A damaged record met while reading when the next retry is due (claims set it aside, but it
/// still counts as waiting) ends the run, said once, instead of polling forever; the healthy
/// tasks are done, and one waiting for its retry is left for a later run (exit 3).
#[tokio::test]
async fn a_damaged_record_while_waiting_for_a_retry_ends_the_run() {
    let faulty = Arc::new(Faulty::new());
    let s: Arc<dyn Store> = faulty.clone();
    // Never due in this run: it would be waited for, polling every --poll.
    tt(&s, &["job", "set", "dmg", "--backoff", "1h"]).await;
    tt(&s, &["add", "dmg", "ok", "retry"]).await;
    // Every look meets the damage, as a damaged record does.
    faulty.lists_corrupt.store(usize::MAX, SeqCst);
    let run = run_script(
        &["--json", "run", "dmg", "--workers", "2", "--poll", "20ms"],
        "[ \"$1\" = ok ]",
        &["{id}"],
    );
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), tt(&s, &run))
        .await
        .expect("the run polled forever");
    assert_eq!(r.code, 3, "{}", r.err);
    let summary = &r.json()["summary"];
    assert_eq!(
        (summary["succeeded"].as_u64(), summary["failed"].as_u64()),
        (Some(1), Some(1)),
        "{summary}"
    );
    assert_eq!(task(&s, "dmg", "ok").await["status"], "succeeded");
    assert_eq!(task(&s, "dmg", "retry").await["status"], "failed");
    let said = "could not read when the next retry is due, so this run ends without waiting for \
                it (tasks waiting for their backoff are left for a later run): ";
    assert_eq!(r.err.matches(said).count(), 1, "said once: {}", r.err);
}

/// An outage while looking for more work is ridden out for a while, as recording an outcome
/// is (8 retries, about 9 s), not forever: then it ends the run as the store's trouble.
#[tokio::test]
async fn an_outage_while_looking_for_more_tasks_is_not_waited_out_forever() {
    let faulty = Arc::new(Faulty::new());
    faulty
        .counts_unavailable_after_success
        .store(usize::MAX, SeqCst);
    let s: Arc<dyn Store> = faulty;
    tt(&s, &["add", "cdown", "a"]).await;
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tt(
            &s,
            &["run", "cdown", "--poll", "10ms", "--", "true", "{id}"],
        ),
    )
    .await
    .expect("the run retried forever");
    assert_eq!(r.code, 1, "{}", r.err);
    assert_eq!(
        r.err
            .matches("could not count the tasks left, retrying: store unavailable")
            .count(),
        8,
        "{}",
        r.err
    );
    assert_eq!(task(&s, "cdown", "a").await["status"], "succeeded");
}

/// A worker that panics in the middle of a task (a bug) ends the run at once, exit 1, also when
/// it is not the first worker: the others must not wait for a command it no longer runs.
#[tokio::test]
async fn a_worker_other_than_the_first_that_panics_ends_the_run() {
    let faulty = Arc::new(Faulty::new());
    *faulty.fail_panics_for.lock().unwrap() = Some("w/2".to_string());
    let s: Arc<dyn Store> = faulty;
    tt(&s, &["add", "pan", "a", "b"]).await;
    // Each task runs long enough for the other worker to claim the other one; both fail.
    let run = run_script(
        &[
            "run",
            "pan",
            "--workers",
            "2",
            "--worker-id",
            "w",
            "--poll",
            "20ms",
        ],
        "sleep 0.3; exit 1",
        &["{id}"],
    );
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), tt(&s, &run))
        .await
        .expect("the run hung on the panicked worker");
    assert_eq!(r.code, 1, "{}", r.err);
    assert!(r.err.contains("a worker stopped unexpectedly"), "{}", r.err);
}

/// An empty program (`-- "$CMD"` with CMD unset) is the run's error, not every task's: refused
/// before anything is claimed, exit 2, nothing recorded.
#[tokio::test]
async fn an_empty_program_is_refused_before_anything_runs() {
    let s = store();
    tt(&s, &["add", "noprog", "a"]).await;
    let args = ["run", "noprog", "--", "", "{id}"];
    let r = tt(&s, &args).await;
    r.assert_one_line_error(2, args);
    assert!(
        r.err
            .contains("the command's program (its first word after `--`) is empty"),
        "{}",
        r.err
    );
    let t = task(&s, "noprog", "a").await;
    assert_eq!(
        (t["status"].as_str(), t["attempts"].as_u64()),
        (Some("pending"), Some(0)),
        "{t}"
    );
}

/// The failure recorded for a refused outcome rides out an outage like any recording; refused
/// too, it is the store's trouble (exit 1, naming the task), not bad input (exit 2).
#[tokio::test]
async fn the_failure_recorded_for_a_refused_outcome_is_retried_and_its_refusal_is_a_store_error() {
    let run = run_script(
        &["--json", "run", "rf", "--workers", "1"],
        "for i in $(seq 200); do printf 'word '; done",
        &["{id}"],
    );
    let faulty = Arc::new(Faulty::refusing_outputs_over(100));
    faulty.failures_unavailable.store(1, SeqCst);
    let s: Arc<dyn Store> = faulty;
    tt(&s, &["add", "rf", "big"]).await;
    let r = tt(&s, &run).await;
    assert_eq!(r.code, 3, "{}", r.err);
    assert!(
        r.err
            .contains("rf/big: could not record the failure yet, retrying"),
        "{}",
        r.err
    );
    assert_eq!(task(&s, "rf", "big").await["error"]["kind"], "unrecordable");

    let faulty = Arc::new(Faulty::refusing_outputs_over(100));
    faulty.refuse_failures.store(true, SeqCst);
    let s: Arc<dyn Store> = faulty;
    tt(&s, &["add", "rf", "big"]).await;
    let r = tt(&s, &run).await;
    assert_eq!(r.code, 1, "{}", r.err);
    let error = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.starts_with("backend error: rf/big: the store refused this attempt's outcome")
            && error.contains("failure refused by the test"),
        "{error}"
    );
}

/// A heartbeat the store never answers must not keep `run` from seeing its command end.
#[tokio::test]
async fn a_hanging_heartbeat_does_not_hide_the_commands_exit() {
    let faulty = Arc::new(Faulty::new());
    faulty.heartbeat_hangs.store(true, SeqCst);
    let s: Arc<dyn Store> = faulty;
    tt(&s, &["add", "hb", "a"]).await;
    // The first heartbeat, after a third of the lease, hangs; the command ends a while later.
    let args = ["run", "hb", "--lease", "3s", "--", "sleep", "1.5"];
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), tt(&s, &args))
        .await
        .expect("run never saw its command end");
    assert_eq!(r.code, 0, "{}", r.err);
}

/// Every command that reads or changes one named job, given one that does not exist.
const ON_A_MISSING_JOB: &[&[&str]] = &[
    &["list", "nosuchjob"],
    &["list", "nosuchjob", "--status", "failed"],
    &["status", "nosuchjob"],
    &["show", "nosuchjob", "a"],
    &["retry", "nosuchjob", "a"],
    &["retry", "nosuchjob", "--failed"],
    &["ignore", "nosuchjob", "a", "b"],
    &["delete", "nosuchjob", "a"],
    &["delete", "nosuchjob", "--all"],
    &["purge", "nosuchjob", "--older-than", "0s"],
    &["export", "nosuchjob"],
    &["export", "nosuchjob", "--format", "csv"],
    &["job", "show", "nosuchjob"],
];

/// What every one of them says on stderr, after `tasktrack: ` or as the JSON error's message.
const NO_SUCH_JOB: &str =
    "not found: job \"nosuchjob\" does not exist (`tasktrack jobs` lists the jobs)";

#[tokio::test]
async fn a_job_that_does_not_exist_is_an_error_naming_it_not_an_empty_answer() {
    let s = store();
    tt(&s, &["add", "real", "a", "b"]).await;
    for args in ON_A_MISSING_JOB {
        let r = tt(&s, args).await;
        assert_eq!(r.code, 4, "{args:?}: {}", r.err);
        assert_eq!(r.out, "", "{args:?}: nothing on stdout");
        assert_eq!(r.err, format!("tasktrack: {NO_SUCH_JOB}\n"), "{args:?}");

        let json: Vec<&str> = std::iter::once("--json")
            .chain(args.iter().copied())
            .collect();
        let r = tt(&s, &json).await;
        assert_eq!(r.code, 4, "{json:?}: {}", r.err);
        assert_eq!(r.out, "", "{json:?}: nothing on stdout");
        let error = r.error_json();
        assert_eq!(
            error,
            serde_json::json!({ "error": { "kind": "not_found", "message": NO_SUCH_JOB } }),
            "{json:?}"
        );
    }
    let jobs = tt(&s, &["--json", "jobs"]).await.json();
    assert_eq!(
        jobs.as_array().map(Vec::len),
        Some(1),
        "none created: {jobs}"
    );
}

#[tokio::test]
async fn an_empty_answer_about_a_job_that_exists_is_success() {
    let s = store();
    let r = tt(&s, &["status"]).await;
    assert_eq!((r.code, r.out.as_str()), (0, "no jobs\n"), "{}", r.err);
    assert_eq!(
        tt(&s, &["--json", "status"]).await.json(),
        serde_json::json!([])
    );
    // Jobs that exist with no task: made by `job set`, or emptied by deleting its tasks.
    assert_eq!(tt(&s, &["job", "set", "empty"]).await.code, 0);
    tt(&s, &["add", "emptied", "a"]).await;
    tt(&s, &["delete", "emptied", "a"]).await;
    tt(&s, &["add", "some", "a"]).await;
    for job in ["empty", "emptied"] {
        let r = tt(&s, &["list", job]).await;
        assert_eq!(
            (r.code, r.out.as_str()),
            (0, "no tasks match\n"),
            "{job}: {}",
            r.err
        );
        let r = tt(&s, &["--json", "list", job]).await;
        assert_eq!(
            (r.code, r.json()),
            (0, serde_json::json!([])),
            "{job}: {}",
            r.err
        );
        let r = tt(&s, &["--json", "status", job]).await;
        assert_eq!(
            (r.code, &r.json()["exists"]),
            (0, &Value::Bool(true)),
            "{job}"
        );
        let r = tt(&s, &["export", job]).await;
        assert_eq!((r.code, r.out.as_str()), (0, ""), "{job}: {}", r.err);
    }
    let r = tt(&s, &["list", "some", "--status", "failed"]).await;
    assert_eq!(
        (r.code, r.out.as_str()),
        (0, "no tasks match\n"),
        "{}",
        r.err
    );
    let r = tt(&s, &["--json", "retry", "some", "--failed"]).await;
    assert_eq!(
        (r.code, &r.json()["retried"]),
        (0, &Value::from(0)),
        "{}",
        r.err
    );
    let r = tt(&s, &["--json", "purge", "some", "--older-than", "1d"]).await;
    assert_eq!(
        (r.code, &r.json()["purged"]),
        (0, &Value::from(0)),
        "{}",
        r.err
    );
    let r = tt(
        &s,
        &["export", "some", "--format", "csv", "--status", "failed"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out.lines().count(), 1, "the header alone: {}", r.out);
    // A missing task of a job that exists is still a missing task, not a missing job.
    let r = tt(&s, &["retry", "some", "zz"]).await;
    assert_eq!(r.code, 4, "{}", r.err);
    assert!(!r.err.contains("job \"some\" does not exist"), "{}", r.err);
    let r = tt(&s, &["show", "some", "zz"]).await;
    assert_eq!(r.code, 4, "{}", r.err);
    assert!(!r.err.contains("job \"some\" does not exist"), "{}", r.err);
    // Commands that act on a job before it exists create it.
    for args in [
        &["add", "new-by-add", "a"][..],
        &["report", "new-by-report", "a", "--success"],
        &["job", "set", "new-by-set"],
    ] {
        assert_eq!(tt(&s, args).await.code, 0, "{args:?}");
    }
    let r = tt(&s, &["status"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(!r.out.contains("no such job"), "{}", r.out);
    assert_eq!(
        tt(&s, &["--json", "status"])
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(6)
    );
}

#[tokio::test]
async fn a_job_with_tasks_is_never_looked_up() {
    let faulty = Arc::new(Faulty::new());
    let s: Arc<dyn Store> = faulty.clone();
    tt(&s, &["add", "busy", "a", "b", "c"]).await;
    tt(&s, &["report", "busy", "c", "--failure"]).await;
    // The look-up is a `counts`: broken, it would fail any command that made it.
    faulty.counts_fail.store(true, SeqCst);
    for (args, code) in [
        (&["list", "busy"][..], 0),
        (&["list", "busy", "--status", "failed"], 0),
        (&["show", "busy", "a"], 0),
        (&["export", "busy"], 0),
        (&["export", "busy", "--format", "csv"], 0),
        (&["retry", "busy", "--failed"], 0),
        // `a` is ignored, `zz` missing: a task was changed, so the job exists.
        (&["ignore", "busy", "a", "zz"], 4),
        (&["delete", "busy", "b"], 0),
    ] {
        let r = tt(&s, args).await;
        assert_eq!(r.code, code, "{args:?}: {}", r.err);
        assert!(!r.err.contains("counts broken"), "{args:?}: {}", r.err);
    }
    let r = tt(&s, &["list", "busy", "--status", "exhausted"]).await;
    assert_eq!(r.code, 1, "an empty answer asks: {}", r.err);
    assert!(r.err.contains("counts broken by the test"), "{}", r.err);
}

/// `add --replace` of a task a worker is running under a live lease is refused (exit 5, naming
/// it, with a hint) and adds nothing: replacing it would fence the worker out while the task
/// started afresh. `--force` replaces it; `--force` alone is a usage error.
#[tokio::test]
async fn add_replace_refuses_running_tasks_unless_forced() {
    use tasktrack::{Claim, TaskKey, Timestamp};
    let s = store();
    assert_eq!(tt(&s, &["add", "j", "a", "b"]).await.code, 0);
    let a = TaskKey::parse("j", "a").unwrap();
    let hour = std::time::Duration::from_secs(3600);
    let held = s
        .claim(&a, &Claim::new("w", hour), Timestamp::now())
        .await
        .unwrap();

    let r = tt(&s, &["add", "j", "a", "b", "--replace", "--data", "2"]).await;
    assert_eq!(r.code, 5, "{}", r.err);
    assert!(
        r.err.contains("1 task(s) to replace are running") && r.err.contains("--force"),
        "{}",
        r.err
    );
    assert!(
        r.err.contains("tasktrack: j/a: locked by w until"),
        "{}",
        r.err
    );
    let now_a = task(&s, "j", "a").await;
    assert_eq!(
        (&now_a["status"], &now_a["lease"]["token"]),
        (&json!("in_progress"), &json!(held.lease.token)),
        "a still runs under its lease"
    );
    assert_eq!(
        task(&s, "j", "b").await["data"],
        Value::Null,
        "nothing added"
    );
    let r = tt(&s, &["--json", "add", "j", "a", "--replace"]).await;
    assert_eq!(r.code, 5);
    assert_eq!(r.error_json()["error"]["kind"], "refused", "{}", r.err);
    assert_eq!(r.err.lines().count(), 1, "one JSON line: {}", r.err);

    let r = tt(
        &s,
        &[
            "--json",
            "add",
            "j",
            "a",
            "b",
            "--replace",
            "--force",
            "--data",
            "2",
        ],
    )
    .await;
    assert_eq!((r.code, &r.json()["replaced"]), (0, &json!(2)), "{}", r.err);
    let a_now = task(&s, "j", "a").await;
    assert_eq!(
        (&a_now["status"], &a_now["data"]),
        (&json!("pending"), &json!(2))
    );
    assert!(
        Cli::try_parse_from(["tasktrack", "add", "j", "a", "--force"]).is_err(),
        "--force needs --replace"
    );
}
