//! Shared test helpers: a store on a directory, and the paths of the files it keeps there.

#![allow(dead_code)] // each test file uses its own share of these
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use tasktrack_core::Timestamp;
use tasktrack_file::FileStore;

/// A store on `dir` (created if missing).
pub async fn open(dir: &Path) -> FileStore {
    tasktrack_file::open(&format!("file://{}", dir.display()))
        .await
        .unwrap()
}

/// The instant the single-process tests run at.
pub fn now() -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000)
}

/// Task `id`'s file in job `job`.
pub fn task_file(dir: &Path, job: &str, id: &str) -> PathBuf {
    dir.join("jobs")
        .join(job)
        .join("tasks")
        .join(format!("{id}.json"))
}

/// Job `job`'s journal, `index.log`.
pub fn journal(dir: &Path, job: &str) -> PathBuf {
    dir.join("jobs").join(job).join("index.log")
}
