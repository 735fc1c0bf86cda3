//! Raw ceiling for `file://`: the cheapest crash-safe write a file system offers — write a small
//! file (the size of a task record), fsync it, rename it into place — in a loop, `workers`
//! threads in parallel, in the store's own directory (so on the same file system and disk).
//!
//! The store does more per change (a journal intent, a directory fsync, the lock), so the
//! ratio says how much of the disk's fsync rate reaches the tasks.

use anyhow::{Context, Result, bail};
use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// About the size of a freshly claimed task's JSON file.
const RECORD_BYTES: usize = 800;

/// ops/s of write + fsync + rename of a small file, `workers` in parallel, `ops` in total.
pub async fn measure(url: &str, workers: usize, ops: usize) -> Result<f64> {
    let Some(rest) = url.strip_prefix("file://") else {
        bail!("{url} is not a file:// URL");
    };
    let dir = PathBuf::from(rest.split('?').next().unwrap_or(rest));
    if dir.as_os_str().is_empty() {
        bail!("{url} names no directory");
    }
    let scratch = dir.join(format!(".ceiling-{}", std::process::id()));
    fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let workers = workers.max(1);
    let per_worker = ops.div_ceil(workers).max(1);
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let scratch = scratch.clone();
            tokio::task::spawn_blocking(move || -> Result<usize> {
                let body = vec![b'x'; RECORD_BYTES];
                let tmp = scratch.join(format!("{w}.tmp"));
                for i in 0..per_worker {
                    let mut file = File::create(&tmp)?;
                    file.write_all(&body)?;
                    file.sync_all()?;
                    fs::rename(&tmp, scratch.join(format!("{w}-{}.json", i % 16)))?;
                }
                Ok(per_worker)
            })
        })
        .collect();
    let rate = super::rate_since(started, handles).await?;
    fs::remove_dir_all(&scratch).with_context(|| format!("removing {}", scratch.display()))?;
    Ok(rate)
}
