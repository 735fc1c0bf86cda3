//! # tasktrack-redis
//!
//! `redis://host:port/db?prefix=tt` (and `rediss://` for TLS): a tasktrack store in Redis, where
//! every state change is one Lua script, claims are O(log n) pops from a sorted set, and a job's
//! progress is read from counters.
//!
//! ```no_run
//! # async fn demo() -> tasktrack_core::Result<()> {
//! use tasktrack_core::Store;
//! let store = tasktrack_redis::open("redis://127.0.0.1:6379/0?prefix=tt").await?;
//! store.init().await?;
//! # Ok(()) }
//! ```
//!
//! # Atomicity
//! Redis runs a Lua script alone: nothing else reads or writes while it runs. Every write of a
//! task is one script that changes the task's hash, its queue entry, its listing entry and the
//! job's counters together, so a client that dies between two calls cannot leave a task counted
//! twice or lost between two sets.
//!
//! - **Native, one round trip** (a script restating the rule, named in the script):
//!   `claim_next` (`lua/claim_next.lua`: promotes due entries, reclaims expired leases, claims up
//!   to `limit` tasks), `heartbeat`, `succeed` and `succeed_many` (`lua/succeed.lua` takes a
//!   list of leases, up to 256 per call, each answered on its own), `succeed_and_claim_next`
//!   (`lua/succeed_claim_next.lua`: the success and the next claims in one script, so a looping
//!   worker pays one round trip per task; a stale lease claims nothing), `fail` (the backoff
//!   instant is computed in Rust and passed in), and `create` (`lua/insert.lua`, 500 tasks per
//!   call, several calls in flight).
//!
//!   The rules these scripts share are written once in `lua/common.lua` (prepended to every task
//!   script): `succeed_lease`, `claim_head`, the index moves, and the counter moves, which each
//!   script accumulates and writes once at its end (`finish`).
//! - **Read + compare-and-set, two round trips**: everything else (`claim` of one id, `release`,
//!   `patch_data`, `ignore`, `retry`, `report`, `delete`, replace-on-create, job records). The
//!   pure rule of [`tasktrack_core::lifecycle`] runs in Rust on the task just read, and
//!   `lua/replace.lua` writes the result only if the task's `version` and `created_at` are
//!   unchanged ([`tasktrack_core::cas::task_revision`]: a task deleted and created again starts
//!   again at version 1), moving its indexes and counters in the same script; on a conflict the
//!   adapter reads again ([`tasktrack_core::cas`]). A `delete` of a task that does not decode
//!   is one unconditional script instead (`lua/delete_damaged.lua`), as no rule can read it.
//!
//! # Layout
//! All keys start with `<prefix>:`. A job's keys share the hash tag `{<job>}` (with `%`, `{`, `}`
//! percent-encoded), so on Redis Cluster they live in one slot and every script touches one slot:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{job}:t:<id>` | hash | one task (fields in `codec.rs`); user JSON kept as its exact text |
//! | `P:{job}:r`, `P:{job}:r:<stage>` | zset, score 0 | tasks claimable now; member `<priority desc><claimable_at><id>`, so lex order is claim order |
//! | `P:{job}:d`, `P:{job}:d:<stage>` | zset | tasks claimable later, scored by the instant: retry backoff, `not_before`, and every live lease by its expiry |
//! | `P:{job}:s:<status>` | zset, score 0 | member `<updated_at><id>`: the listing order, for keyset pagination |
//! | `P:{job}:c` | hash | counters per `status` or `status:stage` |
//! | `P:{job}:x` | zset | ids of damaged tasks claims set aside, scored by the instant |
//! | `P:{%jobs}:rec`, `:ver`, `:state` | hash | job records (JSON), their versions, their states |
//! | `P:{%jobs}:all`, `P:{%jobs}:st:<state>` | zset, score 0 | job names, all and per state |
//!
//! Cross-job operations (`jobs`, `purge` of all jobs, `counts` which reads the job record and the
//! job's counters) touch the `{%jobs}` slot plus one slot per job: on a cluster that is one
//! request per slot, never a multi-slot script. This crate connects to a single Redis server or
//! a primary; the layout is ready for Cluster, the cluster client is not wired in yet.
//!
//! # Limits
//! - `claim_next` is O(log n) in the job's claimable tasks; it promotes at most 1000 due entries
//!   per call (the oldest first), so after a mass expiry a higher-priority task may wait a call.
//! - `counts` is two reads (HGET + HGETALL), whatever the job's size. `list` reads the per-status
//!   sets in order; stage and id-prefix filters are applied to the tasks read. A task hash that
//!   does not decode is named in the page's `unreadable` at its listing entry's place
//!   (`src/list.rs`).
//! - Durability is Redis's: with `appendonly yes` and `appendfsync always` an acknowledged write
//!   survives a crash; with `everysec` (the usual setting) up to a second of writes can be lost;
//!   with persistence off (this repository's test server) a restart loses everything. A replica
//!   promoted after a failover may miss the last writes (replication is asynchronous).
//! - `rediss://` connects with TLS (rustls), trusting the system's root certificates, or only
//!   the PEM file named by `ca_file=` (a private CA); `client_cert_file=` and `client_key_file=`
//!   present a client certificate to a server that requires one (mutual TLS).
//! - Times are millisecond integers from the caller's clock; leases must be much longer than the
//!   clock skew between workers. The server's clock (`TIME`) is never read. A `now` outside
//!   0000-01-01 to 9999-12-31 (what RFC 3339 writes) is refused as invalid input.
//!
//! # Testing
//! `bash scripts/test -p tasktrack-redis` starts Redis on 127.0.0.1:6379 if it is down, then
//! runs the conformance suite (`tests/conformance.rs`) and this crate's own tests. Tests use
//! `TASKTRACK_TEST_REDIS_URL` (default `redis://127.0.0.1:6379/0`), each under its own key
//! prefix, removed afterwards. Without a server they print `SKIPPED`; under `CI=true` they fail.

mod codec;
mod config;
mod docs;
mod error;
mod keys;
mod list;
mod native;
mod scripts;

pub use config::DEFAULT_PREFIX;

use docs::RedisDocs;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tasktrack_core::*;

/// The Redis store. Cheap to clone: clones share one multiplexed connection that reconnects by
/// itself (the `redis` crate's `ConnectionManager`).
#[derive(Debug, Clone)]
pub struct RedisStore {
    docs: RedisDocs,
}

/// Connects to the server a `redis://host:port/db?prefix=tt` (or `rediss://…`) URL names.
///
/// Fails with [`Error::Unavailable`] (naming `host:port`) when the server cannot be reached, and
/// [`Error::InvalidInput`] for a malformed URL or prefix.
pub async fn open(url: &str) -> Result<RedisStore> {
    let config = config::Config::parse(url)?;
    let client = if config.tls {
        tls_client(&config)?
    } else {
        redis::Client::open(config.connect.as_str())
            .map_err(|e| Error::invalid(format!("bad redis URL: {e}")))?
    };
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(30)))
        .set_number_of_retries(2);
    let conn = ConnectionManager::new_with_config(client, manager_config)
        .await
        .map_err(|e| error::map(&config.address, e))?;
    let docs = RedisDocs {
        conn,
        keys: keys::Keys::new(&config.prefix),
        scripts: Arc::new(scripts::Scripts::new()),
        address: config.address,
    };
    Ok(RedisStore { docs })
}

/// A client for a `rediss://` URL: it trusts the system's root certificates, or only those of
/// the URL's `ca_file`, and presents the URL's client certificate if it names one.
fn tls_client(config: &config::Config) -> Result<redis::Client> {
    // rustls uses one crypto provider per process and picks none by itself when several are
    // compiled in (the AWS backends bring their own), so name one. An error only means that a
    // provider is installed already, which serves as well.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| Error::invalid(format!("cannot read {what} {}: {e}", path.display())))
    };
    let root_cert = match &config.ca_file {
        Some(path) => Some(read("ca_file", path)?),
        None => None,
    };
    let client_tls = match &config.client_cert {
        Some((cert, key)) => Some(redis::ClientTlsConfig {
            client_cert: read("client_cert_file", cert)?,
            client_key: read("client_key_file", key)?,
        }),
        None => None,
    };
    let certificates = redis::TlsCertificates {
        client_tls,
        root_cert,
    };
    redis::Client::build_with_tls(config.connect.as_str(), certificates)
        .map_err(|e| Error::invalid(format!("redis TLS setup for {}: {e}", config.address)))
}

impl RedisStore {
    /// The documents the operations that go through the compare-and-swap adapter use (for the
    /// testkit's `documents` cases).
    pub fn documents(&self) -> &impl tasktrack_core::cas::Documents {
        &self.docs
    }

    /// The key prefix (every key of this store starts with `<prefix>:`).
    pub fn prefix(&self) -> &str {
        self.docs.keys.name()
    }

    /// Deletes every key under this store's prefix (test teardown, or starting over); returns
    /// how many. Never use it on a prefix another application shares.
    pub async fn remove_all(&self) -> Result<u64> {
        let pattern = glob_under(&self.docs.keys.prefix());
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .docs
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            if !keys.is_empty() {
                removed += self
                    .docs
                    .query::<u64>(redis::cmd("UNLINK").arg(&keys))
                    .await?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}

/// `prefix*` with the glob characters of the prefix escaped.
fn glob_under(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('*');
    out
}

// The whole `impl Store`: `native` as written, `scripted` operations are one Lua script each
// (`RedisDocs` methods, `src/native.rs`), the rest read + compare-and-swap through the adapter.
tasktrack_core::store_impl! {
    RedisStore;
    native {
        fn backend(&self) -> &'static str {
            "redis"
        }
        async fn init(&self) -> Result<()> {
            // Nothing to create; one round trip proves the server answers.
            self.docs
                .query::<String>(&redis::cmd("PING"))
                .await
                .map(|_| ())
        }
    }
    via self.docs {
        jobs(state: Option<JobState>) -> Vec<Job> => list_jobs;
    }
    // Scripted: one Lua script each.
    via self.docs {
        create(job: &JobName, tasks: &[NewTask], mode: CreateMode, now: Timestamp) -> Created;
        claim_next(job: &JobName, req: &ClaimNext, now: Timestamp) -> Vec<Claimed>;
        heartbeat(lease: &Lease, lease_for: Duration, now: Timestamp) -> Lease;
        succeed(lease: &Lease, output: Value, now: Timestamp) -> Task;
        succeed_many(done: &[(Lease, Value)], now: Timestamp) -> Vec<Result<Task>>;
        succeed_and_claim_next(lease: &Lease, output: Value, next: &ClaimNext, now: Timestamp) -> Handoff;
        fail(lease: &Lease, req: &Fail, now: Timestamp) -> Task;
        counts(job: &JobName) -> Counts;
    }
    through_cas &self.docs {
        put_job(job: &JobName, spec: &JobSpec, now: Timestamp) -> Job;
        get_job(job: &JobName) -> Job;
        set_job_state(job: &JobName, change: JobStateChange, now: Timestamp) -> Job;
        delete_job(job: &JobName, now: Timestamp) -> Deleted;
        claim(key: &TaskKey, req: &Claim, now: Timestamp) -> Claimed;
        patch_data(lease: &Lease, patch: &Value, now: Timestamp) -> Task;
        release(lease: &Lease, now: Timestamp) -> Task;
        ignore(key: &TaskKey, req: &Ignore, now: Timestamp) -> Task;
        retry(key: &TaskKey, req: &Retry, now: Timestamp) -> Task;
        report(key: &TaskKey, req: &Report, now: Timestamp) -> Task;
        delete(key: &TaskKey, now: Timestamp) -> ();
        purge(req: &Purge) -> u64;
        get(key: &TaskKey) -> Task;
        list(query: &TaskQuery) -> TaskPage;
    }
}
