//! Backend-specific tests beside the conformance suite: the native fast paths against the pure
//! rules, the analytics view, counts, errors, and pooling options. Each test runs on both
//! dialects, each in its own scratch schema / database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::time::Duration;
use support::*;
use tasktrack_core::*;

const LEASE: Duration = Duration::from_secs(30);

/// The time every test starts at.
const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

async fn store(dialect: &str) -> Option<ScopedStore> {
    match scratch_store(dialect, "be").await {
        Ok(s) => Some(s),
        Err(e) if tasktrack_core::testkit::in_ci() => {
            panic!("{dialect} unreachable under CI=true: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {dialect} test: server unreachable ({e})");
            None
        }
    }
}

fn job() -> JobName {
    JobName::new(unique("job")).unwrap()
}

fn ids(n: usize) -> Vec<NewTask> {
    (0..n)
        .map(|i| NewTask::new(TaskId::new(format!("t{i:05}")).unwrap()))
        .collect()
}

/// Creates `tasks` tasks in `job` and claims `claims` of them (as worker `w`), all at `now`.
async fn create_and_claim(
    s: &dyn Store,
    job: &JobName,
    tasks: usize,
    claims: usize,
    now: Timestamp,
) -> Vec<Claimed> {
    s.create(job, &ids(tasks), CreateMode::SkipExisting, now)
        .await
        .unwrap();
    let claimed = s
        .claim_next(job, &ClaimNext::new("w", LEASE).with_limit(claims), now)
        .await
        .unwrap();
    assert_eq!(claimed.len(), claims);
    claimed
}

async fn native_paths_match_the_pure_rules(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let j = job();
    let t0 = T0;
    let created = s
        .create(&j, &ids(5), CreateMode::SkipExisting, t0)
        .await
        .unwrap();
    assert_eq!(created.created, 5);
    let again = s
        .create(&j, &ids(6), CreateMode::SkipExisting, t0)
        .await
        .unwrap();
    assert_eq!((again.created, again.existing), (1, 5));

    // The native claim must give exactly what lifecycle::claim gives.
    let before = s
        .get(&TaskKey::new(j.clone(), TaskId::new("t00000").unwrap()))
        .await
        .unwrap();
    let t1 = t0.plus(Duration::from_secs(1));
    let got = s
        .claim_next(&j, &ClaimNext::new("w1", LEASE).with_limit(2), t1)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].task.id.as_str(), "t00000", "oldest first");
    assert_eq!(got[1].task.id.as_str(), "t00001");
    let expected = match lifecycle::claim(&before, &Claim::new("w1", LEASE), t1).unwrap() {
        lifecycle::ClaimDecision::Granted(c) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(got[0], expected);
    assert_eq!(s.get(&expected.task.key()).await.unwrap(), expected.task);

    // The native succeed must give exactly what lifecycle::succeed gives.
    let t2 = t1.plus(Duration::from_secs(1));
    let out = json!({"ok": true, "n": [1, 2.5, null]});
    let want = lifecycle::succeed(&got[0].task, &got[0].lease, out.clone(), t2).unwrap();
    let done = s.succeed(&got[0].lease, out.clone(), t2).await.unwrap();
    assert_eq!(done, want);
    assert_eq!(s.get(&want.key()).await.unwrap(), want);
    // Fenced: a second succeed with the same lease is stale.
    assert!(matches!(
        s.succeed(&got[0].lease, out, t2).await,
        Err(Error::StaleLease { .. })
    ));

    // An expired lease is reclaimed through the pure rule (history records lease_expired).
    let t3 = t1.plus(LEASE).plus(Duration::from_millis(1));
    let re = s
        .claim_next(&j, &ClaimNext::new("w2", LEASE).with_limit(10), t3)
        .await
        .unwrap();
    assert_eq!(re.len(), 5, "t00001 (expired) + 4 pending");
    let reclaimed = re.iter().find(|c| c.task.id.as_str() == "t00001").unwrap();
    assert_eq!(reclaimed.task.attempts, 2);
    assert_eq!(
        reclaimed.task.history.last().map(|h| h.outcome),
        Some(Outcome::LeaseExpired)
    );
    assert!(matches!(
        s.succeed(&got[1].lease, json!(1), t3).await,
        Err(Error::StaleLease { .. })
    ));

    let counts = s.counts(&j).await.unwrap();
    assert_eq!(
        (
            counts.by_status.succeeded,
            counts.by_status.in_progress,
            counts.known
        ),
        (1, 5, 6)
    );
}

async fn analytics_view_has_the_documented_columns(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let (j, t0) = (job(), T0);
    let c = create_and_claim(&*s, &j, 3, 2, t0).await;
    s.succeed(
        &c[0].lease,
        json!(null),
        t0.plus(Duration::from_millis(1500)),
    )
    .await
    .unwrap();
    let fail = Fail {
        error: Failure::new("exit", "boom"),
        retryable: false,
        backoff: Backoff::NONE,
    };
    s.fail(&c[1].lease, &fail, t0.plus(Duration::from_secs(2)))
        .await
        .unwrap();

    let rows = if dialect == "postgres" {
        view_rows_postgres(&s.scratch.url, &j).await
    } else {
        view_rows_mysql(&s.scratch.url, &j).await
    };
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (rows[0].status.as_str(), rows[0].duration),
        ("succeeded", Some(1.5))
    );
    assert_eq!(
        (rows[1].status.as_str(), rows[1].error_message.as_deref()),
        ("exhausted", Some("boom"))
    );
    assert_eq!(rows[2].status, "pending");
}

/// The columns of the analytics view this test checks.
struct ViewRow {
    status: String,
    duration: Option<f64>,
    error_message: Option<String>,
}

fn view_row<R: sqlx::Row>(r: &R) -> ViewRow
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<f64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    ViewRow {
        status: r.get("status"),
        duration: r.get("duration"),
        error_message: r.get("error_message"),
    }
}

/// The view's rows for `job`, in id order; runs the documented example queries too.
async fn view_rows_postgres(url: &str, job: &JobName) -> Vec<ViewRow> {
    let pool = sqlx::PgPool::connect(url.split('?').next().unwrap())
        .await
        .unwrap();
    let schema = url.split("schema=").nth(1).unwrap();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT job, id, status, stage, attempts, error_kind, error_message, created_at, updated_at, finished_at, duration::float8 AS duration
         FROM \"{schema}\".tasktrack_tasks WHERE job = $1 ORDER BY id"
    )))
    .bind(job.as_str())
    .fetch_all(&pool)
    .await
    .unwrap();
    for q in EXAMPLES_PG {
        sqlx::query(sqlx::AssertSqlSafe(q.replace(
            "tasktrack_tasks",
            &format!("\"{schema}\".tasktrack_tasks"),
        )))
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    rows.iter().map(view_row).collect()
}

/// The view's rows for `job`, in id order; runs the documented example queries too.
async fn view_rows_mysql(url: &str, job: &JobName) -> Vec<ViewRow> {
    let pool = sqlx::MySqlPool::connect(url).await.unwrap();
    let rows = sqlx::query(
        "SELECT job, id, status, stage, attempts, error_kind, error_message, created_at, updated_at, finished_at, CAST(duration AS DOUBLE) AS duration
         FROM tasktrack_tasks WHERE job = ? ORDER BY id",
    )
    .bind(job.as_str())
    .fetch_all(&pool)
    .await
    .unwrap();
    for q in EXAMPLES_MYSQL {
        sqlx::query(sqlx::AssertSqlSafe(q.to_string()))
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    rows.iter().map(view_row).collect()
}

/// The example queries of docs/backends/postgres.md (kept in sync by hand; this test runs them).
const EXAMPLES_PG: [&str; 3] = [
    "SELECT error_kind, error_message, count(*) AS n FROM tasktrack_tasks WHERE status IN ('failed', 'exhausted') GROUP BY 1, 2 ORDER BY n DESC LIMIT 20",
    "SELECT job, percentile_cont(0.95) WITHIN GROUP (ORDER BY duration) AS p95_seconds FROM tasktrack_tasks WHERE status = 'succeeded' GROUP BY job",
    "SELECT job, id, lease_owner, lease_expires_at FROM tasktrack_tasks WHERE status = 'in_progress' AND lease_expires_at < now() ORDER BY lease_expires_at",
];

/// The example queries of docs/backends/mysql.md.
const EXAMPLES_MYSQL: [&str; 3] = [
    "SELECT error_kind, error_message, COUNT(*) AS n FROM tasktrack_tasks WHERE status IN ('failed', 'exhausted') GROUP BY error_kind, error_message ORDER BY n DESC LIMIT 20",
    "SELECT DISTINCT job, PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY duration) OVER (PARTITION BY job) AS p95_seconds FROM tasktrack_tasks WHERE status = 'succeeded'",
    "SELECT job, id, lease_owner, lease_expires_at FROM tasktrack_tasks WHERE status = 'in_progress' AND lease_expires_at < UTC_TIMESTAMP(3) ORDER BY lease_expires_at",
];

async fn unreachable_server_is_one_line_naming_host_and_port(dialect: &str) {
    // MySQL through its other scheme, `mariadb://`.
    let scheme = if dialect == "postgres" {
        "postgres"
    } else {
        "mariadb"
    };
    let err = tasktrack_sql::open(&format!("{scheme}://u@127.0.0.1:1/db?connect_timeout=2s"))
        .await
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains('\n'), "{text}");
}

/// The versions `{prefix}schema_version` lists, in order.
async fn schema_versions(s: &ScopedStore, dialect: &str) -> Vec<i32> {
    let url = &s.scratch.url;
    if dialect == "postgres" {
        let pg = tasktrack_sql::PgStore::connect(url).await.unwrap();
        let t = pg.view_name().strip_suffix("tasks").unwrap().to_string();
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT version FROM {t}schema_version ORDER BY version"
        )))
        .fetch_all(pg.pool())
        .await
        .unwrap()
    } else {
        let my = tasktrack_sql::MySqlStore::connect(url).await.unwrap();
        let t = my.view_name().strip_suffix("tasks").unwrap().to_string();
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT version FROM {t}schema_version ORDER BY version"
        )))
        .fetch_all(my.pool())
        .await
        .unwrap()
    }
}

async fn init_is_idempotent_and_versioned(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    s.init().await.unwrap();
    s.init().await.unwrap();
    let latest = if dialect == "postgres" {
        vec![1]
    } else {
        vec![1, 2, 3]
    };
    assert_eq!(schema_versions(&s, dialect).await, latest);
    if dialect == "mysql" {
        // MySQL DDL is not transactional: an init interrupted after a migration ran but before it
        // was recorded runs it again, which must succeed.
        for version in [2, 3] {
            admin_exec(
                &s.scratch.url,
                &format!("DELETE FROM tasktrack_schema_version WHERE version = {version}"),
            )
            .await
            .unwrap();
            let without: Vec<i32> = latest.iter().copied().filter(|v| *v != version).collect();
            assert_eq!(schema_versions(&s, dialect).await, without);
            s.init().await.unwrap();
            assert_eq!(schema_versions(&s, dialect).await, latest);
        }
    }
    let j = job();
    s.create(
        &j,
        &ids(1),
        CreateMode::SkipExisting,
        Timestamp::from_millis(1),
    )
    .await
    .unwrap();
    assert_eq!(s.counts(&j).await.unwrap().by_status.pending, 1);
}

async fn batched_completion_equals_one_by_one(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let (j, t0) = (job(), T0);
    let claimed = create_and_claim(&*s, &j, 6, 6, t0).await;
    let t1 = t0.plus(Duration::from_secs(1));
    // The last lease is made stale first: a forced claim fences it out.
    let last = &claimed[5];
    let mut force = Claim::new("other", LEASE);
    force.force = true;
    s.claim(&last.task.key(), &force, t1).await.unwrap();
    let done: Vec<(Lease, serde_json::Value)> = claimed
        .iter()
        .enumerate()
        .map(|(i, c)| (c.lease.clone(), json!({ "i": i })))
        .collect();
    // Through the Store trait (the scoped wrapper forwards succeed_many to the native one).
    let results = s.succeed_many(&done, t1).await.unwrap();
    assert_eq!(results.len(), 6);
    for (i, (c, r)) in claimed.iter().zip(&results).enumerate().take(5) {
        let want = lifecycle::succeed(&c.task, &c.lease, json!({ "i": i }), t1).unwrap();
        assert_eq!(r.as_ref().unwrap(), &want);
        assert_eq!(s.get(&want.key()).await.unwrap(), want);
    }
    assert!(
        matches!(results[5], Err(Error::StaleLease { .. })),
        "{:?}",
        results[5]
    );
    let counts = s.counts(&j).await.unwrap();
    assert_eq!(
        (counts.by_status.succeeded, counts.by_status.in_progress),
        (5, 1)
    );
}

/// The native hand-off (`succeed_and_claim_next`) gives exactly what the pure rules give: the
/// success of an expired but not reclaimed lease, then the claim in claim order, an expired lease
/// among the candidates reclaimed through `lifecycle::claim` (history records lease_expired), and
/// never the task just completed.
async fn handoff_matches_the_pure_rules(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let (j, t0) = (job(), T0);
    s.create(&j, &ids(4), CreateMode::SkipExisting, t0)
        .await
        .unwrap();
    let t1 = t0.plus(Duration::from_secs(1));
    let claimed = s
        .claim_next(&j, &ClaimNext::new("w", LEASE).with_limit(3), t1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    // Every lease has expired; none has been reclaimed.
    let t2 = t1.plus(LEASE).plus(Duration::from_millis(1));
    let before: Vec<Task> = {
        let mut v = Vec::new();
        for id in ["t00001", "t00003"] {
            v.push(
                s.get(&TaskKey::new(j.clone(), TaskId::new(id).unwrap()))
                    .await
                    .unwrap(),
            );
        }
        v
    };
    let out = json!({"handed": "off"});
    let next = ClaimNext::new("w2", LEASE).with_limit(2);
    let got = s
        .succeed_and_claim_next(&claimed[0].lease, out.clone(), &next, t2)
        .await
        .unwrap();
    let want = lifecycle::succeed(&claimed[0].task, &claimed[0].lease, out, t2).unwrap();
    assert_eq!(got.done, want);
    assert_eq!(s.get(&want.key()).await.unwrap(), want);
    // Claim order: t00003 (pending since t0) before t00001 (claimable since its lease expired).
    let one = Claim::new("w2", LEASE);
    let expect: Vec<Claimed> = [&before[1], &before[0]]
        .iter()
        .map(|t| match lifecycle::claim(t, &one, t2).unwrap() {
            lifecycle::ClaimDecision::Granted(c) => c,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got.next, expect);
    assert_eq!(
        got.next[1].task.history.last().map(|h| h.outcome),
        Some(Outcome::LeaseExpired)
    );
    for c in &got.next {
        assert_eq!(s.get(&c.task.key()).await.unwrap(), c.task);
    }
    // The same lease again is stale, and claims nothing (t00002 stays as it was).
    let t00002 = TaskKey::new(j.clone(), TaskId::new("t00002").unwrap());
    let held = s.get(&t00002).await.unwrap();
    assert!(matches!(
        s.succeed_and_claim_next(&claimed[0].lease, json!(1), &next, t2)
            .await,
        Err(Error::StaleLease { .. })
    ));
    assert_eq!(s.get(&t00002).await.unwrap(), held);
    let counts = s.counts(&j).await.unwrap();
    assert_eq!(
        (counts.by_status.succeeded, counts.by_status.in_progress),
        (1, 3)
    );
}

/// Eight workers handing off at once (on PostgreSQL their hand-offs are combined into shared
/// statements): each gets its next task under its own lease, exactly as stored; a stale lease
/// among them is refused without disturbing the others; every task is completed once.
async fn concurrent_handoffs_grant_each_worker_its_own_lease(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let (j, now) = (job(), T0);
    s.create(&j, &ids(240), CreateMode::SkipExisting, now)
        .await
        .unwrap();
    let workers = (0..8).map(|w| {
        let (s, j) = (s.inner.clone(), j.clone());
        tokio::spawn(async move {
            let req = ClaimNext::new(format!("w{w}"), LEASE);
            let mut done = Vec::new();
            let mut held = s.claim_next(&j, &req, now).await.unwrap().pop();
            while let Some(c) = held {
                let got = s
                    .succeed_and_claim_next(&c.lease, json!(w), &req, now)
                    .await
                    .unwrap();
                assert_eq!(got.done.key(), c.lease.key);
                assert_eq!(got.done.status, Status::Succeeded);
                if done.is_empty() && w == 0 {
                    let again = s
                        .succeed_and_claim_next(&c.lease, json!(w), &req, now)
                        .await;
                    assert!(matches!(again, Err(Error::StaleLease { .. })), "{again:?}");
                }
                done.push(c.lease.key.id.to_string());
                held = got.next.into_iter().next();
                if let Some(next) = &held {
                    assert_eq!(next.lease.owner, format!("w{w}"));
                    assert_eq!(s.get(&next.lease.key).await.unwrap(), next.task);
                }
            }
            done
        })
    });
    let mut completed = Vec::new();
    for w in workers.collect::<Vec<_>>() {
        completed.extend(w.await.unwrap());
    }
    completed.sort();
    let before = completed.len();
    completed.dedup();
    assert_eq!(
        (before, completed.len()),
        (240, 240),
        "each task completed once"
    );
    let counts = s.counts(&j).await.unwrap();
    assert_eq!(
        (counts.by_status.succeeded, counts.by_status.in_progress),
        (240, 0)
    );
}

/// An error far beyond 64 KiB (kind, message and detail; the library's Tracker records whole
/// error chains) is recorded by `fail` and read back byte for byte, on the task and in its
/// history. MySQL's version 1 schema held error_kind and error_message in `TEXT` (65,535 bytes):
/// strict mode refused the write ("Data too long") until migration 2 made them `LONGTEXT`.
async fn long_errors_are_recorded_exactly(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let (j, t0) = (job(), T0);
    let claimed = create_and_claim(&*s, &j, 1, 1, t0).await;
    let long = |unit: &str, bytes: usize| unit.repeat(bytes / unit.len() + 1);
    let error = Failure::new(long("kind-é-", 70 * 1024), long("message ✓ ", 100 * 1024))
        .with_detail(long("detail 🦀\n", 100 * 1024));
    assert!(error.kind.len() > 70 * 1024 && error.message.len() > 100 * 1024);
    let t1 = t0.plus(Duration::from_secs(1));
    let failed = s
        .fail(&claimed[0].lease, &Fail::new(error.clone()), t1)
        .await
        .unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.error.as_ref(), Some(&error));
    let got = s.get(&claimed[0].task.key()).await.unwrap();
    assert_eq!(got, failed);
    assert_eq!(got.error.as_ref(), Some(&error));
    assert_eq!(
        got.history.last().and_then(|h| h.error.as_ref()),
        Some(&error)
    );
}

/// U+0000 (NUL) in what workers and people report — a command's captured `find -print0` output,
/// an error message — is recorded. PostgreSQL cannot store it in `text` nor in a `jsonb` string,
/// so there it becomes U+FFFD (in string values and object keys), and every call returns the
/// task as stored; MySQL stores it as is. A task's `data` is input: PostgreSQL refuses U+0000 in
/// it with `InvalidInput` naming the task (create, in either mode), and any other U+0000 the
/// server refuses is `InvalidInput` too (a job's metadata), never a plain backend error.
async fn nul_in_reports_is_recorded(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let pg = dialect == "postgres";
    let stored = |text: &str| {
        if pg {
            text.replace('\0', "\u{FFFD}")
        } else {
            text.to_string()
        }
    };
    let (j, t0) = (job(), T0);
    let claimed = create_and_claim(&*s, &j, 5, 3, t0).await;
    let t1 = t0.plus(Duration::from_secs(1));
    let out = json!({"stdout": "a\u{0}b", "k\u{0}": ["x\u{0}"]});
    let want_out = {
        let mut m = serde_json::Map::new();
        m.insert("stdout".into(), json!(stored("a\0b")));
        m.insert(stored("k\0"), json!([stored("x\0")]));
        serde_json::Value::Object(m)
    };
    if pg {
        assert_eq!(
            want_out,
            json!({"stdout": "a\u{FFFD}b", "k\u{FFFD}": ["x\u{FFFD}"]})
        );
    }

    // succeed (the one-statement path on PostgreSQL).
    let done = s.succeed(&claimed[0].lease, out.clone(), t1).await.unwrap();
    assert_eq!(done.status, Status::Succeeded);
    assert_eq!(done.output.as_ref(), Some(&want_out));
    assert_eq!(s.get(&done.key()).await.unwrap(), done);

    // The hand-off, and batched completion.
    let next = ClaimNext::new("w2", LEASE);
    let handed = s
        .succeed_and_claim_next(&claimed[1].lease, out.clone(), &next, t1)
        .await
        .unwrap();
    assert_eq!(handed.done.output.as_ref(), Some(&want_out));
    assert_eq!(s.get(&handed.done.key()).await.unwrap(), handed.done);
    assert_eq!(handed.next.len(), 1);
    let many = s
        .succeed_many(&[(claimed[2].lease.clone(), out.clone())], t1)
        .await
        .unwrap();
    let many = many[0].as_ref().unwrap();
    assert_eq!(many.output.as_ref(), Some(&want_out));
    assert_eq!(&s.get(&many.key()).await.unwrap(), many);

    // fail: the error and its history record.
    let error = Failure::new("exit\0", "printed a\0b").with_detail("tail\0end");
    let want_error =
        Failure::new(stored("exit\0"), stored("printed a\0b")).with_detail(stored("tail\0end"));
    let failed = s
        .fail(&handed.next[0].lease, &Fail::new(error), t1)
        .await
        .unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.error.as_ref(), Some(&want_error));
    assert_eq!(
        failed.history.last().and_then(|h| h.error.as_ref()),
        Some(&want_error)
    );
    assert_eq!(s.get(&failed.key()).await.unwrap(), failed);

    // ignore's reason and report's detail.
    let last = TaskKey::new(j.clone(), TaskId::new("t00004").unwrap());
    let ignored = s
        .ignore(
            &last,
            &Ignore {
                reason: Some("skip\0".into()),
                force: false,
            },
            t1,
        )
        .await
        .unwrap();
    assert_eq!(
        ignored.history.last().and_then(|h| h.error.as_ref()),
        Some(&Failure::new("ignored", stored("skip\0")))
    );
    assert_eq!(s.get(&last).await.unwrap(), ignored);
    let reported_key = TaskKey::new(j.clone(), TaskId::new("reported").unwrap());
    let reported = s
        .report(
            &reported_key,
            &Report {
                success: false,
                detail: Some("r\0".into()),
            },
            t1,
        )
        .await
        .unwrap();
    assert_eq!(
        reported.error.as_ref().map(|e| e.message.as_str()),
        Some(stored("r\0").as_str())
    );
    assert_eq!(s.get(&reported_key).await.unwrap(), reported);

    // data is input: refused on PostgreSQL, naming the task; stored as is on MySQL.
    let bad = NewTask::new(TaskId::new("bad").unwrap()).with_data(json!({"x": "a\u{0}b"}));
    let bad_key = TaskKey::new(j.clone(), bad.id.clone());
    let created = s
        .create(&j, std::slice::from_ref(&bad), CreateMode::SkipExisting, t1)
        .await;
    let replacing = NewTask::new(TaskId::new("t00000").unwrap()).with_data(json!(["\u{0}"]));
    let replaced = s.create(&j, &[replacing], CreateMode::Replace, t1).await;
    let t2 = t1.plus(Duration::from_secs(1));
    let held = s
        .claim(&reported_key, &Claim::new("w3", LEASE), t2)
        .await
        .unwrap();
    let patched = s
        .patch_data(&held.lease, &json!({"checkpoint": "\u{0}"}), t2)
        .await;
    let spec = JobSpec {
        metadata: Some(json!({"owner": "\u{0}"})),
        ..JobSpec::default()
    };
    let put = s.put_job(&j, &spec, t1).await;
    if pg {
        for (result, key) in [
            (created.map(|_| ()), "bad"),
            (replaced.map(|_| ()), "t00000"),
            (patched.map(|_| ()), "reported"),
        ] {
            let Err(Error::InvalidInput(message)) = result else {
                panic!("{result:?}");
            };
            assert!(message.contains(&format!("task {j}/{key}")), "{message}");
            assert!(
                message.contains("U+0000") && message.contains("PostgreSQL cannot store"),
                "{message}"
            );
        }
        assert!(matches!(s.get(&bad_key).await, Err(Error::NotFound(_))));
        assert_eq!(s.get(&done.key()).await.unwrap(), done, "not replaced");
        assert_eq!(
            s.get(&reported_key).await.unwrap(),
            held.task,
            "not patched"
        );
        let Err(Error::InvalidInput(message)) = put else {
            panic!("{put:?}");
        };
        assert!(message.contains("U+0000"), "{message}");
        // Past the first 500-row statement: still nothing of the call is written.
        let mut many: Vec<NewTask> = (0..600)
            .map(|i| NewTask::new(TaskId::new(format!("many{i:03}")).unwrap()))
            .collect();
        many.push(bad.clone());
        let refused = s.create(&j, &many, CreateMode::SkipExisting, t2).await;
        assert!(
            matches!(refused, Err(Error::InvalidInput(_))),
            "{refused:?}"
        );
        let first = TaskKey::new(j.clone(), TaskId::new("many000").unwrap());
        assert!(matches!(s.get(&first).await, Err(Error::NotFound(_))));
    } else {
        assert_eq!(created.unwrap().created, 1);
        assert_eq!(s.get(&bad_key).await.unwrap().data, bad.data);
        assert_eq!(replaced.unwrap().replaced, 1);
        assert_eq!(patched.unwrap().data["checkpoint"], json!("\u{0}"));
        put.unwrap();
    }
}

/// Runs `sql` in the test's own schema / database; `{t}` is the table prefix (schema-qualified
/// on PostgreSQL).
async fn exec_scratch(s: &ScopedStore, dialect: &str, sql: &str) {
    let url = &s.scratch.url;
    if dialect == "postgres" {
        let pg = tasktrack_sql::PgStore::connect(url).await.unwrap();
        let t = pg.view_name().strip_suffix("tasks").unwrap().to_string();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.replace("{t}", &t)))
            .execute(pg.pool())
            .await
            .unwrap();
    } else {
        let my = tasktrack_sql::MySqlStore::connect(url).await.unwrap();
        let t = my.view_name().strip_suffix("tasks").unwrap().to_string();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.replace("{t}", &t)))
            .execute(my.pool())
            .await
            .unwrap();
    }
}

/// Sets the `history` of the tasks `ids` to `history` (JSON text) behind the store's back, as a
/// hand edit would; `"damaged"` is valid JSON but not a list, so the row no longer decodes.
async fn set_history(s: &ScopedStore, dialect: &str, ids: &[&str], history: &str) {
    let ids = ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>();
    let sql = format!(
        "UPDATE {{t}}task SET history = '{history}' WHERE id IN ({})",
        ids.join(", ")
    );
    exec_scratch(s, dialect, &sql).await;
}

/// The history that makes a row undecodable (see [`set_history`]).
const DAMAGED: &str = r#""damaged""#;

/// A history that is a list, of entries that are not attempts: the one-statement successes
/// (which check only that it is a list) still complete the row, which then does not read back.
const BAD_ENTRIES: &str = r#"["bad"]"#;

/// Every history [`set_history`] can damage a row of `dialect` with: on MariaDB also text that
/// is not JSON at all (PostgreSQL's `jsonb` columns refuse to store it).
fn damages(dialect: &str) -> Vec<&'static str> {
    let mut all = vec![DAMAGED, BAD_ENTRIES];
    if dialect == "mysql" {
        all.push("{damaged");
    }
    all
}

/// Makes the server refuse every update of a task row that meets `when` (a condition on `NEW`
/// and `OLD`, in the dialect's SQL): a trigger that raises an error. It stands for any failure
/// of work that follows a committed write (a lost connection, a timeout).
async fn poison_updates(s: &ScopedStore, dialect: &str, when: &str) {
    let sql = if dialect == "postgres" {
        format!(
            "CREATE FUNCTION {{t}}poison() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'poisoned update'; END $$; \
             CREATE TRIGGER poison BEFORE UPDATE ON {{t}}task FOR EACH ROW WHEN ({when}) \
             EXECUTE FUNCTION {{t}}poison();"
        )
    } else {
        format!(
            "CREATE TRIGGER {{t}}poison BEFORE UPDATE ON {{t}}task FOR EACH ROW BEGIN \
             IF {when} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poisoned update'; \
             END IF; END"
        )
    };
    exec_scratch(s, dialect, &sql).await;
}

/// Creates the task `late` in `j`: one more claimable task, made after the others.
async fn add_late(s: &ScopedStore, j: &JobName, now: Timestamp) {
    s.create(
        j,
        &[NewTask::new(TaskId::new("late").unwrap())],
        CreateMode::SkipExisting,
        now,
    )
    .await
    .unwrap();
}

/// `claim_next` right after a statement failed on the server on the row it must meet. A
/// PostgreSQL backend sends a failed statement's error before it aborts the transaction, so for
/// a moment after the client has the error the row is still locked, and a claim on another
/// connection passes it by (`SKIP LOCKED`) with `Ok([])`, as it passes any row another worker
/// is claiming. Claims again until it meets the row (an answer other than `Ok([])`).
async fn claim_past_a_failure(
    s: &dyn Store,
    j: &JobName,
    req: &ClaimNext,
    now: Timestamp,
) -> Result<Vec<Claimed>> {
    for _ in 0..200 {
        match s.claim_next(j, req, now).await {
            Ok(won) if won.is_empty() => tokio::time::sleep(Duration::from_millis(5)).await,
            answer => return answer,
        }
    }
    s.claim_next(j, req, now).await
}

fn key(j: &JobName, id: &str) -> TaskKey {
    TaskKey::new(j.clone(), TaskId::new(id).unwrap())
}

/// The general path of the hand-off (a pipeline task, which moves to its next stage): once the
/// success is written, a claim that fails is not the hand-off's error — it answers with the
/// success and nothing claimed (an `Err` would say that nothing happened).
async fn handoff_keeps_its_success_when_the_claim_after_it_fails(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let (j, t0) = (job(), T0);
    let spec = JobSpec {
        stages: Some(vec!["a".into(), "b".into()]),
        ..JobSpec::default()
    };
    s.put_job(&j, &spec, t0).await.unwrap();
    let claimed = create_and_claim(&*s, &j, 1, 1, t0).await;
    assert_eq!(claimed[0].task.stage.as_deref(), Some("a"));
    // The claim after the success (the task itself, now pending at stage b) fails.
    poison_updates(&s, dialect, "NEW.lease_owner = 'poisoned'").await;
    let t1 = t0.plus(Duration::from_secs(1));
    let next = ClaimNext::new("poisoned", LEASE);
    let got = s
        .succeed_and_claim_next(&claimed[0].lease, json!(1), &next, t1)
        .await
        .unwrap();
    assert_eq!(
        (got.done.status, got.done.stage.as_deref()),
        (Status::Pending, Some("b"))
    );
    assert_eq!(s.get(&got.done.key()).await.unwrap(), got.done);
    assert!(got.next.is_empty());
    // The claim on its own is the call's error: nothing was granted.
    assert!(matches!(
        claim_past_a_failure(&*s, &j, &next, t1).await,
        Err(Error::Backend(_))
    ));
}

/// PostgreSQL: the hand-off statement and `claim_next.sql` commit their success and grants
/// before the rows whose lease expired go through the pure rule (a conditional write each).
/// When that write fails, the success and the leases granted are still returned; only a claim
/// that granted nothing answers the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_committed_grants_when_an_expiry_fails() {
    let Some(s) = store("postgres").await else {
        return;
    };
    let (j, t0) = (job(), T0);
    let t1 = t0.plus(Duration::from_secs(1));
    let claimed = create_and_claim(&*s, &j, 3, 2, t1).await;
    // Every lease has expired: t00001 is a candidate after t00002 (pending since t1).
    let t2 = t1.plus(LEASE).plus(Duration::from_millis(1));
    let t00001 = s.get(&key(&j, "t00001")).await.unwrap();
    // The expiry of a lease (a history entry lease_expired) fails on the server.
    poison_updates(&s, "postgres", "NEW.history::text LIKE '%lease_expired%'").await;

    // The hand-off: success and t00002 granted by the statement, t00001's expiry fails.
    let next = ClaimNext::new("w2", LEASE).with_limit(2);
    let got = s
        .succeed_and_claim_next(&claimed[0].lease, json!("done"), &next, t2)
        .await
        .unwrap();
    assert_eq!(got.done.status, Status::Succeeded);
    assert_eq!(s.get(&got.done.key()).await.unwrap(), got.done);
    assert_eq!(got.next.len(), 1);
    assert_eq!(got.next[0].task.id.as_str(), "t00002");
    assert_eq!(got.next[0].lease.owner, "w2");
    assert_eq!(s.get(&key(&j, "t00002")).await.unwrap(), got.next[0].task);
    assert_eq!(
        s.get(&key(&j, "t00001")).await.unwrap(),
        t00001,
        "left as it was"
    );

    // claim_next: `late` granted by the statement, t00001's expiry fails.
    add_late(&s, &j, t2).await;
    let won = s
        .claim_next(&j, &ClaimNext::new("w3", LEASE).with_limit(2), t2)
        .await
        .unwrap();
    assert_eq!(won.len(), 1);
    assert_eq!(won[0].task.id.as_str(), "late");
    assert_eq!(s.get(&key(&j, "late")).await.unwrap(), won[0].task);
    // Nothing but t00001 left: nothing granted, so the error is the call's.
    assert!(matches!(
        claim_past_a_failure(&*s, &j, &ClaimNext::new("w4", LEASE), t2).await,
        Err(Error::Backend(_))
    ));
    assert_eq!(s.get(&key(&j, "t00001")).await.unwrap(), t00001);
    // The row stayed claimable: once the server accepts the write, it is expired and claimed.
    exec_scratch(&s, "postgres", "DROP TRIGGER poison ON {t}task").await;
    let again = claim_past_a_failure(&*s, &j, &ClaimNext::new("w4", LEASE), t2)
        .await
        .unwrap();
    assert_eq!(again[0].task.id.as_str(), "t00001");
    assert_eq!(
        again[0].task.history.last().map(|h| h.outcome),
        Some(Outcome::LeaseExpired)
    );
}

/// MySQL: a hand-off transaction whose candidates were all refused or exhausted goes on with
/// `claim_next`, and `claim_next` goes on with further rounds; each round is its own committed
/// transaction. When a later one fails, what the committed ones did is returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_keeps_committed_work_when_a_later_claim_round_fails() {
    let Some(s) = store("mysql").await else {
        return;
    };
    let (j, t0) = (job(), T0);
    let t1 = t0.plus(Duration::from_secs(1));
    let t2 = t1.plus(LEASE).plus(Duration::from_millis(1));
    // Any grant of a task named `late` fails on the server.
    poison_updates(&s, "mysql", "NEW.id = 'late' AND NEW.status = 10").await;
    let once = |id: &str| NewTask::new(TaskId::new(id).unwrap()).with_max_attempts(1);

    // The hand-off: `mine` (held until after t2) succeeds and `dies` (its lease expired on its
    // only attempt) is exhausted in one transaction; its claim found nothing to grant, so
    // claim_next goes on, and its grant of `late` fails.
    s.create(
        &j,
        &[once("dies"), NewTask::new(TaskId::new("mine").unwrap())],
        CreateMode::SkipExisting,
        t0,
    )
    .await
    .unwrap();
    let claim = Claim::new("w", LEASE);
    s.claim(&key(&j, "dies"), &claim, t1).await.unwrap();
    let mine = s
        .claim(&key(&j, "mine"), &claim, t1.plus(Duration::from_secs(1)))
        .await
        .unwrap();
    add_late(&s, &j, t2).await;
    let got = s
        .succeed_and_claim_next(&mine.lease, json!("done"), &ClaimNext::new("w2", LEASE), t2)
        .await
        .unwrap();
    assert_eq!(got.done.status, Status::Succeeded);
    assert_eq!(s.get(&got.done.key()).await.unwrap(), got.done);
    assert!(got.next.is_empty());
    assert_eq!(
        s.get(&key(&j, "dies")).await.unwrap().status,
        Status::Exhausted
    );
    assert_eq!(
        s.get(&key(&j, "late")).await.unwrap().status,
        Status::Pending
    );

    // claim_next: round 1 grants `first` and exhausts `dies2` (two candidates, one lease);
    // round 2's grant of `late` fails.
    let k = job();
    s.create(
        &k,
        &[NewTask::new(TaskId::new("first").unwrap()), once("dies2")],
        CreateMode::SkipExisting,
        t0,
    )
    .await
    .unwrap();
    s.claim(&key(&k, "dies2"), &claim, t1).await.unwrap();
    add_late(&s, &k, t2).await;
    let won = s
        .claim_next(&k, &ClaimNext::new("w3", LEASE).with_limit(2), t2)
        .await
        .unwrap();
    assert_eq!(won.len(), 1);
    assert_eq!(won[0].task.id.as_str(), "first");
    assert_eq!(s.get(&key(&k, "first")).await.unwrap(), won[0].task);
    assert_eq!(
        s.get(&key(&k, "dies2")).await.unwrap().status,
        Status::Exhausted
    );
    assert_eq!(
        s.get(&key(&k, "late")).await.unwrap().status,
        Status::Pending
    );
}

/// A batch claim answers in claim order even when it mixes rows it granted in one statement
/// with expired leases it reclaimed through the pure rule afterwards (PostgreSQL used to list
/// the granted rows first; found by the model check).
async fn a_batch_claim_answers_in_claim_order_expired_leases_included(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let (j, t0) = (job(), T0);
    let tasks = [("low", -1), ("high", 0)]
        .map(|(id, p)| NewTask::new(TaskId::new(id).unwrap()).with_priority(p));
    s.create(&j, &tasks, CreateMode::SkipExisting, t0)
        .await
        .unwrap();
    s.claim(&key(&j, "high"), &Claim::new("w", LEASE), t0)
        .await
        .unwrap();
    let later = t0.plus(LEASE).plus(Duration::from_secs(1));
    let won = s
        .claim_next(&j, &ClaimNext::new("w2", LEASE).with_limit(2), later)
        .await
        .unwrap();
    let order: Vec<&str> = won.iter().map(|c| c.task.id.as_str()).collect();
    assert_eq!(
        order,
        ["high", "low"],
        "priority first, the expired lease included"
    );
}

/// A row a claim cannot decode (edited by hand: here its history is not a list) is set aside
/// instead of failing every claim of its job: claims go on with the other tasks, before and
/// after their leases expire; `get` still answers `Corrupt`; repaired and retried, the task is
/// claimable again.
async fn a_damaged_row_is_set_aside_by_claims(dialect: &str) {
    for damage in damages(dialect) {
        damaged_row_is_set_aside_by_claims(dialect, damage).await;
    }
}

async fn damaged_row_is_set_aside_by_claims(dialect: &str, damage: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let (j, t0) = (job(), T0);
    s.create(&j, &ids(3), CreateMode::SkipExisting, t0)
        .await
        .unwrap();
    set_history(&s, dialect, &["t00000"], damage).await;
    let names =
        |won: Vec<Claimed>| -> Vec<String> { won.iter().map(|c| c.task.id.to_string()).collect() };
    let claim = ClaimNext::new("w", LEASE);
    let first = s.claim_next(&j, &claim, t0).await.unwrap();
    assert_eq!(
        names(first),
        ["t00001"],
        "{damage}: the damaged head is passed by"
    );
    let damaged = key(&j, "t00000");
    let err = s.get(&damaged).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("t00000"), "names the row: {err}");
    let second = s.claim_next(&j, &claim, t0).await.unwrap();
    assert_eq!(names(second), ["t00002"]);
    let later = t0.plus(LEASE).plus(Duration::from_secs(1));
    let reclaimed = s
        .claim_next(&j, &ClaimNext::new("w2", LEASE).with_limit(5), later)
        .await
        .unwrap();
    assert_eq!(
        names(reclaimed),
        ["t00001", "t00002"],
        "expired leases come back, the damaged row does not"
    );

    set_history(&s, dialect, &["t00000"], "[]").await;
    s.retry(&damaged, &Retry::default(), later).await.unwrap();
    let again = s.claim_next(&j, &claim, later).await.unwrap();
    assert_eq!(names(again), ["t00000"]);
}

/// `delete` removes a damaged row whatever its lease says, one held by a live lease and one a
/// claim has set aside, and the triggers take it out of the counts
/// (`testkit::damaged::a_damaged_task_can_be_deleted`), for every way [`damages`] has.
async fn a_damaged_task_can_be_deleted(dialect: &str) {
    for damage in damages(dialect) {
        damaged_task_can_be_deleted(dialect, damage).await;
    }
}

async fn damaged_task_can_be_deleted(dialect: &str, damage: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let h = testkit::Harness::new(s.guarded(), "a_damaged_task_can_be_deleted", 1.0);
    // The scratch namespace holds the harness's job alone, so its ids name its rows.
    let damage_row = |k: TaskKey| {
        let s = s.clone();
        async move { set_history(&s, dialect, &[k.id.as_str()], damage).await }
    };
    testkit::damaged::a_damaged_task_can_be_deleted(h, damage_row)
        .await
        .unwrap_or_else(|e| panic!("{damage}: {e}"));
}

/// A list names a damaged row in its page's `unreadable`, at the row's place in the order, instead
/// of failing and hiding the rest of the job; `delete_job` removes it with the others
/// (`testkit::damaged::a_damaged_task_is_named_by_lists_not_hiding_the_others`), for every way
/// [`damages`] has.
async fn a_damaged_task_is_named_by_lists_not_hiding_the_others(dialect: &str) {
    for damage in damages(dialect) {
        damaged_task_is_named_by_lists(dialect, damage).await;
    }
}

async fn damaged_task_is_named_by_lists(dialect: &str, damage: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let h = testkit::Harness::new(s.guarded(), "a_damaged_task_is_named_by_lists", 1.0);
    // The scratch namespace holds the harness's job alone, so its ids name its rows.
    let damage_row = |k: TaskKey| {
        let s = s.clone();
        async move { set_history(&s, dialect, &[k.id.as_str()], damage).await }
    };
    testkit::damaged::a_damaged_task_is_named_by_lists_not_hiding_the_others(h, damage_row)
        .await
        .unwrap_or_else(|e| panic!("{damage}: {e}"));
}

/// A task whose `status` column is edited by hand into a code nobody knows is counted as
/// unreadable (the counter triggers count whatever the column holds), named by lists and
/// deletable (`testkit::damaged::a_task_whose_status_does_not_read_still_counts`).
async fn a_task_whose_status_does_not_read_still_counts(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let h = testkit::Harness::new(s.guarded(), "a_task_whose_status_does_not_read", 1.0);
    // The scratch namespace holds the harness's job alone, so its ids name its rows.
    let damage_status = |k: TaskKey| {
        let s = s.clone();
        let sql = format!("UPDATE {{t}}task SET status = 99 WHERE id = '{}'", k.id);
        async move { exec_scratch(&s, dialect, &sql).await }
    };
    let counted = testkit::damaged::StatusUnread::CountedAsUnreadable;
    testkit::damaged::a_task_whose_status_does_not_read_still_counts(h, damage_status, counted)
        .await
        .unwrap();
}

/// A damaged row among the hand-off's candidates does not cost the worker its success: the
/// success is recorded and the claim goes on past the row; in a batched completion, a damaged
/// row answers `Corrupt` for its own lease only.
async fn a_damaged_row_fails_only_its_own_lease(dialect: &str) {
    for damage in damages(dialect) {
        damaged_row_fails_only_its_own_lease(dialect, damage).await;
    }
}

async fn damaged_row_fails_only_its_own_lease(dialect: &str, damage: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let (j, t0) = (job(), T0);
    let claimed = create_and_claim(&*s, &j, 5, 2, t0).await;
    set_history(&s, dialect, &["t00002"], damage).await;
    let got = s
        .succeed_and_claim_next(&claimed[0].lease, json!(1), &ClaimNext::new("w", LEASE), t0)
        .await
        .unwrap();
    assert_eq!(got.done.status, Status::Succeeded);
    let next: Vec<&str> = got.next.iter().map(|c| c.task.id.as_str()).collect();
    assert_eq!(next, ["t00003"], "{damage}: past the damaged candidate");

    set_history(&s, dialect, &["t00001"], damage).await;
    let done = [
        (claimed[1].lease.clone(), json!(2)),
        (got.next[0].lease.clone(), json!(3)),
    ];
    let answers = s.succeed_many(&done, t0).await.unwrap();
    let kinds: Vec<Option<ErrorKind>> = answers
        .iter()
        .map(|a| a.as_ref().err().map(Error::kind))
        .collect();
    assert_eq!(kinds, [Some(ErrorKind::Corrupt), None], "{damage}");
    assert_eq!(
        s.get(&key(&j, "t00003")).await.unwrap().status,
        Status::Succeeded
    );
}

/// A hand-off whose own row does not read back once completed (its history edited by hand into
/// a list of non-attempts, which the one-statement success still completes) answers `Corrupt`,
/// and the task its claim granted is released, not left held by a lease its worker never heard
/// of (it would expire as a dead attempt). MariaDB writes nothing and claims nothing.
async fn a_handoff_whose_row_does_not_read_back_releases_what_it_granted(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let (j, t0) = (job(), T0);
    let claimed = create_and_claim(&*s, &j, 3, 1, t0).await;
    set_history(&s, dialect, &["t00000"], BAD_ENTRIES).await;
    let got = s
        .succeed_and_claim_next(&claimed[0].lease, json!(1), &ClaimNext::new("w", LEASE), t0)
        .await;
    assert!(matches!(got, Err(Error::Corrupt { .. })), "{got:?}");
    for id in ["t00001", "t00002"] {
        let t = s.get(&key(&j, id)).await.unwrap();
        assert_eq!(
            (t.status, t.lease, t.attempts),
            (Status::Pending, None, 0),
            "{id}"
        );
    }
    assert_eq!(s.counts(&j).await.unwrap().by_status.pending, 2);
}

/// PostgreSQL, combined hand-offs: the one whose own row does not read back answers `Corrupt`
/// alone, and the lease granted with it is released; every other worker gets its success and
/// its next task, and no task is left in progress that no worker was told of.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_combined_handoffs_release_what_a_damaged_success_granted() {
    let Some(s) = store("postgres").await else {
        return;
    };
    let (j, t0) = (job(), T0);
    let claimed = create_and_claim(&*s, &j, 24, 8, t0).await;
    let damaged = claimed[3].task.id.to_string();
    set_history(&s, "postgres", &[damaged.as_str()], BAD_ENTRIES).await;
    let calls = claimed.into_iter().enumerate().map(|(w, c)| {
        let s = s.inner.clone();
        tokio::spawn(async move {
            let next = ClaimNext::new(format!("w{w}"), LEASE);
            let got = s
                .succeed_and_claim_next(&c.lease, json!(w), &next, t0)
                .await;
            (c.task.id.to_string(), got.map(|h| h.next.len()))
        })
    });
    let mut told = 0;
    for call in calls.collect::<Vec<_>>() {
        let (id, got) = call.await.unwrap();
        match got {
            Ok(n) => told += n,
            Err(e) => assert_eq!(
                (id.as_str(), e.kind()),
                (damaged.as_str(), ErrorKind::Corrupt)
            ),
        }
    }
    let counts = s.counts(&j).await.unwrap().by_status;
    assert_eq!(told, 7, "every healthy hand-off got a task");
    assert_eq!(counts.in_progress, 7, "none held unknown to its worker");
    assert_eq!((counts.succeeded, counts.pending), (8, 16 - 7));
}

/// PostgreSQL: a candidate whose lease expired comes back from the claim's statement ungranted
/// and goes through the pure rule afterwards, written on condition that the row is still the
/// version the statement read. Its slow holder may succeed in between, moving it to the next
/// pipeline stage (here a trigger does so as the statement grants the other candidate): the
/// claim then leaves it alone, where it used to re-read the row and grant it at whatever stage
/// it had reached, to a worker that asked for `extract`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reclaims_an_expired_lease_only_as_its_claim_read_it() {
    let Some(s) = store("postgres").await else {
        return;
    };
    let (j, t0) = (job(), T0);
    let spec = JobSpec {
        stages: Some(vec!["extract".into(), "transform".into()]),
        ..JobSpec::default()
    };
    s.put_job(&j, &spec, t0).await.unwrap();
    let tasks = [
        NewTask::new(TaskId::new("a").unwrap()),
        NewTask::new(TaskId::new("b").unwrap()),
    ];
    s.create(&j, &tasks, CreateMode::SkipExisting, t0)
        .await
        .unwrap();
    s.claim(&key(&j, "a"), &Claim::new("slow", LEASE), t0)
        .await
        .unwrap();
    exec_scratch(
        &s,
        "postgres",
        "CREATE FUNCTION {t}slow_success() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN            UPDATE {t}task SET stage = 'transform', status = 0, attempts = 0,              claim_at = NEW.lease_acquired_at, lease_owner = NULL, lease_token = NULL,              lease_acquired_at = NULL, lease_expires_at = NULL, version = version + 1            WHERE job = NEW.job AND id = 'a' AND stage = 'extract';            RETURN NULL; END $$;          CREATE TRIGGER slow_success AFTER UPDATE ON {t}task FOR EACH ROW            WHEN (NEW.id = 'b' AND NEW.status = 10) EXECUTE FUNCTION {t}slow_success();",
    )
    .await;
    let later = t0.plus(LEASE).plus(Duration::from_secs(1));
    let req = ClaimNext::new("w", LEASE).with_limit(2).at_stage("extract");
    let won = s.claim_next(&j, &req, later).await.unwrap();
    let got: Vec<(&str, Option<&str>)> = won
        .iter()
        .map(|c| (c.task.id.as_str(), c.task.stage.as_deref()))
        .collect();
    assert_eq!(got, [("b", Some("extract"))]);
    let a = s.get(&key(&j, "a")).await.unwrap();
    assert_eq!(
        (a.status, a.stage.as_deref(), a.lease),
        (Status::Pending, Some("transform"), None),
        "left as its holder's success made it"
    );
}

/// Damaged rows scattered through a job drained by concurrent hand-offs (which PostgreSQL
/// combines into one statement): every hand-off succeeds, every healthy task is completed once,
/// and the damaged ones are set aside, still `Corrupt` for `get`.
async fn concurrent_handoffs_pass_damaged_rows_by(dialect: &str) {
    // A history of the wrong shape (it fails in the rules' decoding), and data the driver itself
    // cannot read (PostgreSQL: jsonb holding a number past f64, which serde_json refuses;
    // MariaDB: JSON text that does not parse), which fails while the row is read.
    let undecodable = match dialect {
        "postgres" => r#"data = '{"x": 1e400}'"#,
        _ => "data = '{damaged'",
    };
    for damage in [r#"history = '"damaged"'"#, undecodable] {
        concurrent_handoffs_pass_rows_damaged_by(dialect, damage).await;
    }
}

async fn concurrent_handoffs_pass_rows_damaged_by(dialect: &str, damage: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let (j, now) = (job(), T0);
    s.create(&j, &ids(120), CreateMode::SkipExisting, now)
        .await
        .unwrap();
    let damaged: Vec<String> = (5..120).step_by(10).map(|i| format!("t{i:05}")).collect();
    let quoted: Vec<String> = damaged.iter().map(|id| format!("'{id}'")).collect();
    let sql = format!(
        "UPDATE {{t}}task SET {damage} WHERE id IN ({})",
        quoted.join(", ")
    );
    exec_scratch(&s, dialect, &sql).await;
    let workers = (0..6).map(|w| {
        let (s, j) = (s.inner.clone(), j.clone());
        tokio::spawn(async move {
            let req = ClaimNext::new(format!("w{w}"), LEASE);
            let mut done = Vec::new();
            let mut held = s.claim_next(&j, &req, now).await.unwrap().pop();
            while let Some(c) = held {
                let got = s
                    .succeed_and_claim_next(&c.lease, json!(w), &req, now)
                    .await
                    .unwrap();
                done.push(got.done.id.to_string());
                held = got.next.into_iter().next();
            }
            done
        })
    });
    let mut completed = Vec::new();
    for w in workers.collect::<Vec<_>>() {
        completed.extend(w.await.unwrap());
    }
    completed.sort();
    let healthy: Vec<String> = (0..120)
        .map(|i| format!("t{i:05}"))
        .filter(|id| !damaged.contains(id))
        .collect();
    assert_eq!(
        completed, healthy,
        "{damage}: each healthy task once, no damaged one"
    );
    for id in &damaged {
        let err = s.get(&key(&j, id)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{id}: {err}");
        assert!(
            err.to_string().contains(id.as_str()),
            "names the row: {err}"
        );
    }
    let later = now.plus(LEASE).plus(Duration::from_secs(1));
    let sweep = ClaimNext::new("x", LEASE).with_limit(50);
    let rest = s.claim_next(&j, &sweep, later).await.unwrap();
    assert!(rest.is_empty(), "the damaged rows stay set aside: {rest:?}");
}

/// A row marked finished by hand (`status` set, its claim column left as it was) must not
/// block the job: it stays at the head of the claim index, and a claim that only refused it
/// would answer `[]` while other tasks wait. Claims pass it by (PostgreSQL) or re-index it
/// (MariaDB) and go on.
async fn a_row_finished_by_hand_does_not_block_claims(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let (j, t0) = (job(), T0);
    s.create(&j, &ids(3), CreateMode::SkipExisting, t0)
        .await
        .unwrap();
    exec_scratch(
        &s,
        dialect,
        "UPDATE {t}task SET status = 40 WHERE id = 't00000'",
    )
    .await;
    let claim = ClaimNext::new("w", LEASE);
    let mut order = Vec::new();
    for _ in 0..3 {
        let won = s.claim_next(&j, &claim, t0).await.unwrap();
        order.extend(won.into_iter().map(|c| c.task.id.to_string()));
    }
    assert_eq!(order, ["t00001", "t00002"]);
    assert_eq!(
        s.get(&key(&j, "t00000")).await.unwrap().status,
        Status::Succeeded
    );
}

/// A row whose token or version a claim cannot advance (edited by hand to the largest BIGINT)
/// is set aside like a row that does not decode, by a hand-off's claim and by `claim_next`; on
/// PostgreSQL its grant used to overflow and fail the whole statement, so every claim of the job.
async fn a_row_a_claim_cannot_advance_is_set_aside(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    let (j, t0) = (job(), T0);
    s.create(&j, &ids(4), CreateMode::SkipExisting, t0)
        .await
        .unwrap();
    let held = s
        .claim(&key(&j, "t00003"), &Claim::new("w", LEASE), t0)
        .await
        .unwrap();
    let max = i64::MAX;
    exec_scratch(
        &s,
        dialect,
        &format!("UPDATE {{t}}task SET token = {max} WHERE id = 't00000'"),
    )
    .await;
    exec_scratch(
        &s,
        dialect,
        &format!("UPDATE {{t}}task SET version = {max} WHERE id = 't00001'"),
    )
    .await;
    let got = s
        .succeed_and_claim_next(&held.lease, json!(1), &ClaimNext::new("w", LEASE), t0)
        .await
        .unwrap();
    let next: Vec<&str> = got.next.iter().map(|c| c.task.id.as_str()).collect();
    assert_eq!(next, ["t00002"]);
    let rest = s
        .claim_next(&j, &ClaimNext::new("w", LEASE).with_limit(4), t0)
        .await
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    for id in ["t00000", "t00001"] {
        assert_eq!(
            s.get(&key(&j, id)).await.unwrap().status,
            Status::Pending,
            "{id}"
        );
    }
}

/// The conditional writes of the compare-and-swap paths tell a re-created task from the one
/// deleted before it (`testkit::documents`), on the store's own documents.
async fn a_copy_read_before_a_delete_does_not_match_the_re_created_task(dialect: &str) {
    let Some(s) = store(dialect).await else {
        return;
    };
    use tasktrack_core::testkit::documents;
    let url = &s.scratch.url;
    if dialect == "postgres" {
        let pg = tasktrack_sql::PgStore::connect(url).await.unwrap();
        documents::a_copy_read_before_a_delete_does_not_match_the_re_created_task(&pg)
            .await
            .unwrap();
    } else {
        let my = tasktrack_sql::MySqlStore::connect(url).await.unwrap();
        documents::a_copy_read_before_a_delete_does_not_match_the_re_created_task(&my)
            .await
            .unwrap();
    }
}

/// Every case above, once per dialect: `postgres::<case>` and `mysql::<case>`.
macro_rules! on_both_dialects {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::$case("postgres").await;
            })*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::$case("mysql").await;
            })*
        }
    };
}

on_both_dialects!(
    native_paths_match_the_pure_rules,
    analytics_view_has_the_documented_columns,
    unreachable_server_is_one_line_naming_host_and_port,
    init_is_idempotent_and_versioned,
    batched_completion_equals_one_by_one,
    handoff_matches_the_pure_rules,
    concurrent_handoffs_grant_each_worker_its_own_lease,
    long_errors_are_recorded_exactly,
    nul_in_reports_is_recorded,
    handoff_keeps_its_success_when_the_claim_after_it_fails,
    a_batch_claim_answers_in_claim_order_expired_leases_included,
    a_damaged_row_is_set_aside_by_claims,
    a_damaged_row_fails_only_its_own_lease,
    a_damaged_task_can_be_deleted,
    a_damaged_task_is_named_by_lists_not_hiding_the_others,
    a_task_whose_status_does_not_read_still_counts,
    a_handoff_whose_row_does_not_read_back_releases_what_it_granted,
    concurrent_handoffs_pass_damaged_rows_by,
    a_row_finished_by_hand_does_not_block_claims,
    a_row_a_claim_cannot_advance_is_set_aside,
    a_copy_read_before_a_delete_does_not_match_the_re_created_task,
);

/// The store vacuums the task table itself every `vacuum_every` granted claims (the claim index
/// would otherwise keep every claimed row version's entry; autovacuum is off on the test server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_vacuums_the_task_table_every_n_claims() {
    let Some(s) = store("postgres").await else {
        return;
    };
    let pg = tasktrack_sql::PgStore::connect(&format!("{}&vacuum_every=3", s.scratch.url))
        .await
        .unwrap();
    let j = job();
    let t0 = T0;
    pg.create(&j, &ids(4), CreateMode::SkipExisting, t0)
        .await
        .unwrap();
    // The task table is named like the view, without its final "s".
    let table = pg.view_name().strip_suffix("tasks").unwrap().to_string() + "task";
    let vacuums = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = $1::regclass",
        )
        .bind(&table)
        .fetch_one(pg.pool())
        .await
        .unwrap();
        n
    };
    let req = ClaimNext::new("w", LEASE).with_limit(2);
    assert_eq!(pg.claim_next(&j, &req, t0).await.unwrap().len(), 2);
    assert_eq!(vacuums().await, 0, "2 claims: not due yet");
    assert_eq!(pg.claim_next(&j, &req, t0).await.unwrap().len(), 2);
    let mut seen = 0;
    for _ in 0..100 {
        seen = vacuums().await;
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 1, "the 3rd claim made one vacuum due");
}

/// Bulk create writes at most 500 rows per statement, as documented (`cas::create` hands the
/// store chunks of 500): each statement commits on its own, so the rows of one statement share
/// one `xmin` (inserting transaction id), and 1,001 tasks take 3 of them (500, 500, 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bulk_create_is_one_statement_per_500_tasks() {
    let Some(s) = store("postgres").await else {
        return;
    };
    let pg = tasktrack_sql::PgStore::connect(&s.scratch.url)
        .await
        .unwrap();
    let j = job();
    let created = pg
        .create(&j, &ids(1001), CreateMode::SkipExisting, T0)
        .await
        .unwrap();
    assert_eq!(created.created, 1001);
    let table = pg.view_name().strip_suffix("tasks").unwrap().to_string() + "task";
    let per_statement: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} WHERE job = $1 GROUP BY xmin::text ORDER BY 1 DESC"
    )))
    .bind(j.as_str())
    .fetch_all(pg.pool())
    .await
    .unwrap();
    assert_eq!(per_statement, vec![500, 500, 1]);
}

/// The store's hot statements use the indexes they were written for: a claim reads the claim
/// index in claim order and stops at its LIMIT (`task_claim`, or `task_claim_stage` at a stage), a
/// success finds its row by primary key, and none reads a listing index. Checked on the plans
/// PostgreSQL makes for them as the store runs them (generic plans) on a table never analyzed
/// (autovacuum may be off). Two tests once picked the wrong index: a status filter in the claim's
/// `candidates` made the planner take (job, status, updated_at) and sort every pending row of the
/// job per claim (9 claims/s at 100,000 tasks), and `status = 10` in a success scanned every
/// in-progress row of the job. No functional test notices either.
#[tokio::test]
async fn postgres_statements_use_the_indexes_they_were_written_for() {
    let Some(s) = store("postgres").await else {
        return;
    };
    let pg = tasktrack_sql::PgStore::connect(&s.scratch.url)
        .await
        .unwrap();
    let j = job();
    pg.create(&j, &ids(2000), CreateMode::SkipExisting, T0)
        .await
        .unwrap();
    let t = pg.view_name().strip_suffix("tasks").unwrap().to_string();
    let p = t.rsplit('.').next().unwrap().to_string();
    let mut conn = pg.pool().acquire().await.unwrap();
    sqlx::raw_sql("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *conn)
        .await
        .unwrap();
    let statements = [
        (
            "claim_next",
            include_str!("../queries/postgres/claim_next.sql"),
            &["task_claim"][..],
        ),
        (
            "handoff",
            include_str!("../queries/postgres/handoff.sql"),
            &["task_pkey", "task_claim"],
        ),
        (
            "handoff_many",
            include_str!("../queries/postgres/handoff_many.sql"),
            &["task_claim"],
        ),
        (
            "succeed",
            include_str!("../queries/postgres/succeed.sql"),
            &["task_pkey"],
        ),
    ];
    for (name, sql, uses) in statements {
        // A claim at a stage runs the statement with its `/*stage: … */` filter turned on.
        for staged in [false, true] {
            if staged && !sql.contains("/*stage:") {
                continue;
            }
            let sql = if staged {
                at_stage(sql)
            } else {
                sql.to_string()
            };
            let plan = generic_plan(&mut conn, &sql.replace("{t}", &t).replace("{p}", &p)).await;
            for index in uses {
                let index = if staged && *index == "task_claim" {
                    "task_claim_stage"
                } else {
                    index
                };
                assert!(
                    plan.contains(&format!("Index Scan using {p}{index} on")),
                    "{name} (staged: {staged}) does not scan {index}:\n{plan}"
                );
            }
            for other in ["task_updated", "task_status_updated"] {
                assert!(
                    !plan.contains(&format!("{p}{other} ")),
                    "{name} (staged: {staged}) reads {other}:\n{plan}"
                );
            }
            assert!(
                !plan.contains(&format!("Seq Scan on {p}task ")),
                "{name} (staged: {staged}) reads the whole task table:\n{plan}"
            );
        }
    }
}

/// The generic plan of `sql` (`EXPLAIN` of it prepared, with every parameter NULL).
async fn generic_plan(conn: &mut sqlx::PgConnection, sql: &str) -> String {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE q AS {sql}")))
        .execute(&mut *conn)
        .await
        .unwrap();
    let params: i32 = sqlx::query_scalar(
        "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = 'q'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    let nulls = vec!["NULL"; usize::try_from(params).unwrap()].join(", ");
    let plan: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN EXECUTE q({nulls})")))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    sqlx::raw_sql("DEALLOCATE q")
        .execute(&mut *conn)
        .await
        .unwrap();
    plan.join("\n")
}

/// MariaDB's counterpart of the test above: its claim statements read the claim index in claim
/// order (no filesort), the hand-off's success and a batched completion find their rows by
/// primary key, and none reads a listing index. MariaDB plans each statement with its values,
/// so the `?`s are given values of the right types.
#[tokio::test]
async fn mysql_statements_use_the_indexes_they_were_written_for() {
    let Some(s) = store("mysql").await else {
        return;
    };
    let my = tasktrack_sql::MySqlStore::connect(&s.scratch.url)
        .await
        .unwrap();
    let j = job();
    my.create(&j, &ids(2000), CreateMode::SkipExisting, T0)
        .await
        .unwrap();
    let t = my.view_name().strip_suffix("tasks").unwrap().to_string();
    let (job, now) = (format!("'{j}'"), T0.as_millis().to_string());
    let lock_keys =
        include_str!("../queries/mysql/lock_keys.sql").replace("{keys}", "(?, ?), (?, ?)");
    let statements = [
        (
            "claim_lock",
            include_str!("../queries/mysql/claim_lock.sql").to_string(),
            vec![&job[..], "0", &now, "4"],
            &["task_claim"][..],
        ),
        (
            "claim_lock_after",
            include_str!("../queries/mysql/claim_lock_after.sql").to_string(),
            vec![&job[..], "0", &now, "4"],
            &["task_claim"][..],
        ),
        (
            "handoff_lock",
            include_str!("../queries/mysql/handoff_lock.sql").to_string(),
            vec![&job[..], "'t00001'", &job, &now, "4"],
            &["PRIMARY", "task_claim"],
        ),
        (
            "lock_keys",
            lock_keys,
            vec![&job[..], "'t00001'", &job, "'t00002'"],
            &["PRIMARY"],
        ),
        (
            "claimable",
            include_str!("../queries/mysql/claimable.sql").to_string(),
            vec![&job[..], &now, "4"],
            &["task_claim"],
        ),
        (
            "claimable_stage",
            include_str!("../queries/mysql/claimable_stage.sql").to_string(),
            vec![&job[..], "'stage'", &now, "4"],
            &["task_claim_stage"],
        ),
    ];
    let mut conn = my.pool().acquire().await.unwrap();
    for (name, sql, values, uses) in statements {
        for staged in [false, true] {
            if staged && !sql.contains("/*stage:") {
                continue;
            }
            // Without its comments, whose text may hold a `?` too.
            let sql: Vec<&str> = sql
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect();
            let (sql, mut values) = (sql.join("\n").replace("{t}", &t), values.clone());
            let sql = if staged {
                // The stage's `?` comes right after the job's in the claim part.
                let at = values.iter().rposition(|v| *v == job).unwrap();
                values.insert(at + 1, "'stage'");
                at_stage(&sql)
            } else {
                without_stage(&sql)
            };
            let mut values = values.into_iter();
            let sql: String = sql
                .split('?')
                .enumerate()
                .map(|(i, part)| {
                    if i == 0 {
                        part.to_string()
                    } else {
                        format!("{}{part}", values.next().unwrap())
                    }
                })
                .collect();
            assert!(values.next().is_none(), "{name}: values left over");
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            let plan: Vec<(Option<String>, Option<String>)> = rows
                .iter()
                .map(|r| {
                    use sqlx::Row;
                    (r.try_get("key").unwrap(), r.try_get("Extra").unwrap())
                })
                .collect();
            let keys: Vec<String> = plan.iter().filter_map(|(k, _)| k.clone()).collect();
            for index in uses {
                let index = match (*index, staged) {
                    ("PRIMARY", _) => "PRIMARY".to_string(),
                    // The scan past the first eight priorities (rare) may read either claim
                    // index at a stage: both are in claim order once the stage is filtered.
                    ("task_claim", true) if name == "claim_lock_after" => {
                        let stage = format!("{t}task_claim_stage");
                        let plain = format!("{t}task_claim");
                        if keys.contains(&stage) { stage } else { plain }
                    }
                    ("task_claim", true) => format!("{t}task_claim_stage"),
                    (other, _) => format!("{t}{other}"),
                };
                assert!(
                    keys.contains(&index),
                    "{name} (staged: {staged}) does not use {index}: {plan:?}"
                );
            }
            assert!(
                keys.iter().all(|k| !k.contains("updated")),
                "{name} (staged: {staged}) reads a listing index: {plan:?}"
            );
            assert!(
                plan.iter()
                    .all(|(_, extra)| !extra.as_deref().unwrap_or("").contains("filesort")),
                "{name} (staged: {staged}) sorts: {plan:?}"
            );
        }
    }
    // The plans above hold on servers without descending indexes (MariaDB 10.6 and 10.7 build
    // `DESC` parts ascending) only if the claim indexes have none: claim order is read off them
    // ascending (`neg_priority` is -priority, migration 3).
    assert_eq!(
        claim_index_parts(&mut conn).await,
        ascending_claim_indexes()
    );
}

/// The claim indexes of the connection's database as `(index, column, direction)` in index order
/// (`A` ascending, `D` descending), read from information_schema.
async fn claim_index_parts(conn: &mut sqlx::MySqlConnection) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT INDEX_NAME, COLUMN_NAME, COLLATION FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'tasktrack_task' \
         AND INDEX_NAME IN ('tasktrack_task_claim', 'tasktrack_task_claim_stage') \
         ORDER BY INDEX_NAME, SEQ_IN_INDEX",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

/// What [`claim_index_parts`] reads from a database at schema version 3 or later.
fn ascending_claim_indexes() -> Vec<(String, String, String)> {
    let claim = ["job", "claimable", "neg_priority", "claim_at", "id"];
    let stage = [
        "job",
        "claimable",
        "stage",
        "neg_priority",
        "claim_at",
        "id",
    ];
    let parts = |index: &str, columns: &[&str]| -> Vec<(String, String, String)> {
        columns
            .iter()
            .map(|c| (index.to_string(), c.to_string(), "A".to_string()))
            .collect()
    };
    let mut all = parts("tasktrack_task_claim", &claim);
    all.extend(parts("tasktrack_task_claim_stage", &stage));
    all
}

/// A database left at schema version 2 (migrations 1 and 2 exactly as they were shipped, its
/// claim indexes `priority DESC`) with tasks in it is upgraded by `init`: migration 3 adds
/// `neg_priority` to the rows already there and rebuilds the claim indexes ascending, and the
/// tasks are then claimed in claim order, highest priority (`i32::MAX`) to lowest (`i32::MIN`,
/// whose negation does not fit an INT).
#[tokio::test]
async fn mysql_upgrades_a_version_2_database_to_ascending_claim_indexes() {
    let scratch = match Scratch::mysql("up").await {
        Ok(s) => s,
        Err(e) if tasktrack_core::testkit::in_ci() => {
            panic!("mysql unreachable under CI=true: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED mysql test: server unreachable ({e})");
            return;
        }
    };
    // Version 2 as `init` left it: the schema_version table (as MySqlStore::migrate_locked
    // creates it), then the two migrations and their records.
    let v2 = [
        "CREATE TABLE tasktrack_schema_version (version INT PRIMARY KEY, name VARCHAR(200) NOT NULL)",
        include_str!("../migrations/mysql/0001_tables.sql"),
        include_str!("../migrations/mysql/0002_long_errors.sql"),
        "INSERT INTO tasktrack_schema_version VALUES (1, 'tables'), (2, 'long_errors')",
    ];
    for sql in v2 {
        admin_exec(&scratch.url, &sql.replace("{t}", "tasktrack_"))
            .await
            .unwrap();
    }
    let my = tasktrack_sql::MySqlStore::connect(&scratch.url)
        .await
        .unwrap();
    let mut conn = my.pool().acquire().await.unwrap();
    let descending = claim_index_parts(&mut conn).await;
    assert!(
        descending
            .iter()
            .any(|(_, c, d)| c == "priority" && d == "D"),
        "not the version 2 schema: {descending:?}"
    );
    // Created at version 2 (creation does not read the claim order), one per priority.
    let j = job();
    let priorities = [0, i32::MIN, 7, i32::MAX, -7, 7];
    let tasks: Vec<NewTask> = priorities
        .iter()
        .enumerate()
        .map(|(i, p)| NewTask::new(TaskId::new(format!("t{i:05}")).unwrap()).with_priority(*p))
        .collect();
    my.create(&j, &tasks, CreateMode::SkipExisting, T0)
        .await
        .unwrap();
    my.init().await.unwrap();
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM tasktrack_schema_version ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(
        claim_index_parts(&mut conn).await,
        ascending_claim_indexes()
    );
    let negated: Vec<(i32, i64)> =
        sqlx::query_as("SELECT priority, neg_priority FROM tasktrack_task ORDER BY id")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    let expected: Vec<(i32, i64)> = priorities.iter().map(|p| (*p, -i64::from(*p))).collect();
    assert_eq!(negated, expected);
    drop(conn);
    let claimed = my
        .claim_next(
            &j,
            &ClaimNext::new("w", LEASE).with_limit(priorities.len()),
            T0,
        )
        .await
        .unwrap();
    let order: Vec<&str> = claimed.iter().map(|c| c.task.id.as_str()).collect();
    // Highest priority first; equal priorities (t00002 and t00005, both 7) by id, as all were
    // claimable since T0.
    assert_eq!(
        order,
        ["t00003", "t00002", "t00005", "t00000", "t00004", "t00001"]
    );
}

/// `sql` as a claim at a stage runs it: its `/*stage: … */` filter turned on.
fn at_stage(sql: &str) -> String {
    sql.replace("/*stage:", "").replace(" */", "")
}

/// `sql` without its `/*stage: … */` filter (whose `?` MariaDB's EXPLAIN would count).
fn without_stage(sql: &str) -> String {
    match (sql.find("/*stage:"), sql.find(" */")) {
        (Some(from), Some(to)) => format!("{}{}", &sql[..from], &sql[to + 3..]),
        _ => sql.to_string(),
    }
}
