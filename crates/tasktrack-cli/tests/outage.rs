//! `tasktrack run` rides out a restart of its database server (DESIGN.md, quality bars:
//! "restarting servers mid-run ... no task lost, none completed twice, clear errors").
//!
//! Each test runs the real binary against PostgreSQL, MariaDB, Redis, or the emulators of S3,
//! DynamoDB and MongoDB the test script starts, through an outage proxy
//! ([`Proxy`]): once the run is under way, every connection is cut and refused for a while, as
//! a server restart does, then let through again. The run must warn and retry, then finish the
//! job with every task executed once and succeeded once, counts matching the tasks. The
//! outage is shorter than the lease, so no lease expires: a second execution would be a bug,
//! not the at-least-once re-run of a dead worker's task.
#![cfg(feature = "all-backends")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::*;
use tasktrack::testkit::{in_ci, outage::Proxy};

const TASKS: usize = 40;
const OUTAGE: Duration = Duration::from_millis(1500);
const LONG: Duration = Duration::from_secs(120);

/// A server the tests can cut off: where it listens, how a newcomer starts it, and how a test
/// makes and removes its scratch space there.
struct Server {
    name: &'static str,
    /// `host:port`, or where the test script put it (the emulators listen on a free port).
    upstream: fn() -> Option<String>,
    how_to_start: &'static str,
}

/// The `host:port` of the URL in the environment variable `var`.
fn from_env(var: &str) -> Option<String> {
    let url = std::env::var(var).ok()?;
    let rest = url.split("://").nth(1)?;
    Some(rest.split(['/', '?']).next()?.to_string())
}

const POSTGRES: Server = Server {
    name: "postgres",
    upstream: || Some("127.0.0.1:5432".into()),
    how_to_start: "pg_ctlcluster $(ls /etc/postgresql) main start (or: bash scripts/test -p tasktrack-cli, which starts it)",
};
const MARIADB: Server = Server {
    name: "mariadb",
    upstream: || Some("127.0.0.1:3306".into()),
    how_to_start: "start-stop-daemon --start --background --exec /usr/sbin/mariadbd (or: bash scripts/test -p tasktrack-cli, which starts it)",
};
const REDIS: Server = Server {
    name: "redis",
    upstream: || Some("127.0.0.1:6379".into()),
    how_to_start: "redis-server --daemonize yes --port 6379 --save '' --appendonly no (or: bash scripts/test -p tasktrack-cli, which starts it)",
};
const MOTO_S3: Server = Server {
    name: "s3",
    upstream: || from_env("TASKTRACK_TEST_MOTO_ENDPOINT"),
    how_to_start: "source scripts/services/common.sh; source scripts/services/moto.sh; start_moto",
};
const MOTO_DYNAMODB: Server = Server {
    name: "dynamodb",
    upstream: || from_env("TASKTRACK_TEST_MOTO_ENDPOINT"),
    how_to_start: "source scripts/services/common.sh; source scripts/services/moto.sh; start_moto",
};
const SECANTUS: Server = Server {
    name: "mongodb",
    upstream: || from_env("TASKTRACK_TEST_MONGODB_URL"),
    how_to_start: "source scripts/services/common.sh; source scripts/services/secantus.sh; start_secantus",
};

impl Server {
    /// Where the server listens; `None` (after saying so) when it is not there outside CI; a
    /// failure under CI.
    fn reachable(&self) -> Option<String> {
        let found = (self.upstream)()
            .ok_or_else(|| "its address is not set (not started)".to_string())
            .and_then(|at| {
                TcpStream::connect(&at)
                    .map(|_| at)
                    .map_err(|e| e.to_string())
            });
        match found {
            Ok(at) => Some(at),
            Err(e) if in_ci() => panic!(
                "{} unreachable under CI=true: {e}. Start it with: {}",
                self.name, self.how_to_start
            ),
            Err(e) => {
                eprintln!(
                    "SKIPPED {} restart test: server unreachable ({e}); start it with: {}",
                    self.name, self.how_to_start
                );
                None
            }
        }
    }
}

/// The scratch space of one test (a PostgreSQL schema, a MariaDB database, a Redis key prefix;
/// on the emulators a prefix or table of their own, which go with the emulator's memory), made
/// on the server directly and removed when dropped.
struct Scratch {
    server: &'static Server,
    upstream: String,
    name: String,
}

impl Scratch {
    fn new(server: &'static Server, upstream: String) -> Scratch {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("ttout_{}_{nanos}", std::process::id());
        let scratch = Scratch {
            server,
            upstream,
            name,
        };
        if server.name == "mariadb" {
            scratch.mysql(&format!("CREATE DATABASE {}", scratch.name));
        }
        scratch
    }

    /// The store's URL through `proxy`.
    fn url(&self, proxy: &Proxy) -> String {
        let (at, name) = (proxy.addr(), &self.name);
        let moto = format!("endpoint=http://{at}&region=us-east-1");
        match self.server.name {
            "postgres" => format!("postgres://postgres@{at}/test?schema={name}&pool_size=6"),
            "mariadb" => format!("mysql://root@{at}/{name}?pool_size=6"),
            "redis" => format!("redis://{at}/0?prefix={name}"),
            "s3" => format!("s3://tasktrack-test/{name}?{moto}"),
            "dynamodb" => format!("dynamodb://{}?{moto}", name.replace('_', "-")),
            _ => format!(
                "mongodb://{at}/?directConnection=true&retryWrites=false&prefix={name}\
                 &serverSelectionTimeoutMS=3000"
            ),
        }
    }

    fn mysql(&self, sql: &str) {
        block_on(async {
            use sqlx::Connection;
            let url = format!("mysql://root@{}/test", self.upstream);
            let mut c = sqlx::MySqlConnection::connect(&url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut c)
                .await
                .map(drop)
        })
        .unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (upstream, name) = (self.upstream.clone(), self.name.clone());
        match self.server.name {
            "postgres" => block_on(async move {
                use sqlx::Connection;
                let url = format!("postgres://postgres@{upstream}/test");
                let mut c = sqlx::PgConnection::connect(&url).await?;
                let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .map(drop)
            })
            .unwrap(),
            "mariadb" => self.mysql(&format!("DROP DATABASE IF EXISTS {name}")),
            "redis" => drop_redis_keys(&upstream, &name),
            _ => {} // the emulators keep everything in memory, gone when the test script stops them
        }
    }
}

fn drop_redis_keys(upstream: &str, prefix: &str) {
    let client = redis::Client::open(format!("redis://{upstream}/0")).unwrap();
    let mut c = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut c)
        .unwrap();
    if !keys.is_empty() {
        redis::cmd("DEL").arg(keys).exec(&mut c).unwrap();
    }
}

fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The whole scenario on one server.
fn rides_out_a_restart(server: &'static Server) {
    let Some(upstream) = server.reachable() else {
        return;
    };
    let proxy = Proxy::start(&upstream).unwrap();
    let scratch = Scratch::new(server, upstream);
    let env = Env::at(scratch.url(&proxy));
    assert_eq!(env.tt(&["init"]).code, 0);
    let ids: String = (1..=TASKS).map(|i| format!("t{i:03}\n")).collect();
    let added = env.tt_stdin(&["add", "restart", "-"], &ids);
    assert_eq!(added.code, 0, "{}", added.err);

    let log = env.path("ran.log");
    let run = env.spawn(&run_script(
        &[
            "--json",
            "run",
            "restart",
            "--workers",
            "4",
            "--lease",
            "60s",
        ],
        "echo \"$1\" >> \"$2\"; sleep 0.1; echo '{\"ok\":true}'",
        &["{id}", log.to_str().unwrap()],
    ));
    wait_until("the run to get going", LONG, || lines(&log).len() >= 8);
    proxy.cut();
    std::thread::sleep(OUTAGE);
    proxy.restore();
    let done = finish(run, LONG);

    assert_eq!(done.code, 0, "the run rides out the restart: {}", done.err);
    // The run met the outage: it connected again while the server was away (and was turned
    // away). PostgreSQL, MariaDB and Redis then answer errors the run warns about and retries;
    // the AWS SDK and the MongoDB driver retry (or wait for the server) on their own.
    assert!(
        proxy.refused() > 0,
        "the run never met the outage: {}",
        done.err
    );
    assert_eq!(done.json()["summary"]["succeeded"], TASKS, "{}", done.out);
    let mut ran = lines(&log);
    ran.sort();
    let all: Vec<String> = (1..=TASKS).map(|i| format!("t{i:03}")).collect();
    assert_eq!(ran, all, "every task executed exactly once");
    let status = env.json(&["status", "restart"]);
    assert_eq!(status["by_status"]["succeeded"], TASKS, "{status}");
    assert_eq!(status["total"], TASKS, "counts match the tasks: {status}");
    for task in env.json(&["list", "restart"]).as_array().unwrap() {
        assert_eq!(task["attempts"], 1, "succeeded once, first time: {task}");
    }
}

#[test]
fn postgres_restart_mid_run_loses_and_repeats_nothing() {
    rides_out_a_restart(&POSTGRES);
}

#[test]
fn mariadb_restart_mid_run_loses_and_repeats_nothing() {
    rides_out_a_restart(&MARIADB);
}

#[test]
fn redis_restart_mid_run_loses_and_repeats_nothing() {
    rides_out_a_restart(&REDIS);
}

#[test]
fn s3_restart_mid_run_loses_and_repeats_nothing() {
    rides_out_a_restart(&MOTO_S3);
}

#[test]
fn dynamodb_restart_mid_run_loses_and_repeats_nothing() {
    rides_out_a_restart(&MOTO_DYNAMODB);
}

#[test]
fn mongodb_restart_mid_run_loses_and_repeats_nothing() {
    rides_out_a_restart(&SECANTUS);
}
