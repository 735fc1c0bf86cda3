//! Object names: how job names and task ids become S3 keys, traversal-proof.
//!
//! ```text
//! <prefix>/<job>/<id>.json        one task document
//! <prefix>/<job>/.index-<k>.json    shard k of the job's index (see `index`, `indexer`)
//! <prefix>/.jobs/<job>.json       one job record
//! ```
//!
//! `<job>` and `<id>` are *encoded*: ASCII letters, digits, `-` and `_` stand for themselves and
//! every other byte of the UTF-8 name is written `=XX` (two upper-case hex digits). So an encoded
//! name never contains `/`, `.`, `%` or `~`: it cannot climb out of its folder (`../`), cannot
//! be `.` or `..`, never needs URL escaping, and never collides with the reserved names above,
//! which all start with `.`. Encoding is injective, so jobs `a` and `a-b` live in different
//! folders and a listing of `a/` never sees `a-b/`.
//!
//! A name whose encoding would exceed [`MAX_ENCODED`] bytes (S3 keys are at most 1024 bytes and
//! both a job and an id may be 512 bytes of non-ASCII) is written `=h` followed by the SHA-256 of
//! the name in hex; `=h` never occurs in the plain encoding (`h` is not a hex digit we write).
//! The documents themselves hold the real names, so nothing is lost.

use object_store::path::Path;
use sha2::{Digest, Sha256};
use std::fmt::Write;
use tasktrack_core::{JobName, TaskKey};

/// Longest plain encoding; longer names are hashed (keeps every key under S3's 1024 bytes).
pub const MAX_ENCODED: usize = 200;

/// Encodes one job name or task id as a single object-name segment (see the module docs).
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "={b:02X}");
        }
        if out.len() > MAX_ENCODED {
            return hashed(name);
        }
    }
    out
}

fn hashed(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let mut out = String::from("=h");
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Where a store's objects live: a bucket (held by the client) and a key prefix.
#[derive(Debug, Clone)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// A layout under `prefix` (no leading or trailing `/`; empty for the bucket's root).
    pub fn new(prefix: &str) -> Self {
        Layout {
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    /// The prefix as given (for messages).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn path(&self, rest: &str) -> Path {
        // Every segment we build is plain ASCII without reserved characters, and the user's
        // prefix was validated by `Path::parse` in `config`, so `from` never re-escapes anything.
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// `<prefix>/<job>/<id>.json`.
    pub fn task(&self, key: &TaskKey) -> Path {
        self.path(&format!(
            "{}/{}.json",
            encode(key.job.as_str()),
            encode(key.id.as_str())
        ))
    }

    /// `<prefix>/<job>/` — every task of the job (and its index) is under it.
    pub fn job_dir(&self, job: &JobName) -> Path {
        self.path(&encode(job.as_str()))
    }

    /// `<prefix>/<job>/.index-<shard>.json`.
    pub fn index(&self, job: &JobName, shard: usize) -> Path {
        self.path(&format!("{}/.index-{shard}.json", encode(job.as_str())))
    }

    /// `<prefix>/.jobs/<job>.json`.
    pub fn job(&self, job: &JobName) -> Path {
        self.path(&format!(".jobs/{}.json", encode(job.as_str())))
    }

    /// `<prefix>/.jobs/`.
    pub fn jobs_dir(&self) -> Path {
        self.path(".jobs")
    }

    /// Whether an object listed under a job folder is a task document (not the index).
    pub fn is_task_object(path: &Path) -> bool {
        path.filename()
            .is_some_and(|f| !f.starts_with('.') && f.ends_with(".json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_readable_and_others_are_escaped() {
        assert_eq!(encode("batch-7_a"), "batch-7_a");
        assert_eq!(encode("../x"), "=2E=2E=2Fx");
        assert_eq!(encode("a/b"), "a=2Fb");
        assert_eq!(encode("100%"), "100=25");
        assert_eq!(encode("é"), "=C3=A9");
        assert_eq!(encode("="), "=3D");
        assert_eq!(encode("."), "=2E");
    }

    #[test]
    fn encoding_is_injective_on_tricky_pairs() {
        let names = [
            "a", "a-b", "a=2D", "a-", "a.b", "a/b", "a=2Fb", "=h00", "..", ".",
        ];
        let mut seen = std::collections::HashSet::new();
        for n in names {
            assert!(seen.insert(encode(n)), "collision for {n:?}");
        }
    }

    #[test]
    fn long_names_are_hashed_and_stay_short() {
        let long = "é".repeat(256);
        let e = encode(&long);
        assert!(e.starts_with("=h") && e.len() == 66, "{e}");
        assert_ne!(encode(&"é".repeat(255)), e);
        let key = TaskKey::new(
            JobName::new(long.clone()).unwrap(),
            tasktrack_core::TaskId::new(long).unwrap(),
        );
        assert!(Layout::new("some/prefix").task(&key).as_ref().len() < 1024);
    }

    #[test]
    fn reserved_names_are_never_task_objects() {
        let l = Layout::new("p");
        let job = JobName::new("j").unwrap();
        assert!(!Layout::is_task_object(&l.index(&job, 3)));
        assert_eq!(l.index(&job, 3).as_ref(), "p/j/.index-3.json");
        assert_eq!(l.job(&job).as_ref(), "p/.jobs/j.json");
        assert_eq!(Layout::new("").job_dir(&job).as_ref(), "j");
    }
}
