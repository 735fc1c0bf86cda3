//! Raw ceiling for s3: a conditional PUT loop (`If-Match` on the previous ETag) of a small
//! object, one object per loop so no PUT ever conflicts, `workers` loops at once, on the bucket,
//! endpoint and credentials the store URL names, through the same client the store uses.
//! Every claim and every succeed of the store is at least one such PUT of a task document, so
//! the store's tasks/s can at best approach half this figure; what it spends beyond that
//! (index writes, reads) is its overhead.

use anyhow::Result;
use std::time::Instant;
use tasktrack_s3::Config;
use tasktrack_s3::objects::Put;

/// Ops/s of the conditional-PUT loop, `ops` PUTs spread over `workers` loops.
pub async fn measure(url: &str, workers: usize, ops: usize) -> Result<f64> {
    let config = Config::parse(url)?;
    let (objects, _) = config.connect().await?;
    let objects = std::sync::Arc::new(objects);
    let prefix = if config.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", config.prefix)
    };
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let workers = workers.max(1);
    let per_worker = ops.div_ceil(workers).max(1);
    let started = Instant::now();
    let loops: Vec<_> = (0..workers)
        .map(|w| {
            let objects = objects.clone();
            let path =
                object_store::path::Path::from(format!("{prefix}.bench-ceiling/{run}-w{w}.json"));
            tokio::spawn(async move {
                let mut etag = match objects.put(&path, body(w, 0), None).await? {
                    Put::Written(e) => e,
                    Put::Conflict(_) => anyhow::bail!("ceiling object {path} exists already"),
                };
                for i in 1..per_worker {
                    etag = match objects.put(&path, body(w, i), Some(&etag)).await? {
                        Put::Written(e) => e,
                        Put::Conflict(_) => {
                            anyhow::bail!("ceiling object {path} changed under the loop")
                        }
                    };
                }
                Ok::<usize, anyhow::Error>(per_worker)
            })
        })
        .collect();
    super::rate_since(started, loops).await
}

/// A small JSON body that changes on every write (S3 ETags are content hashes).
fn body(worker: usize, i: usize) -> Vec<u8> {
    format!(
        "{{\"worker\":{worker},\"version\":{i},\"pad\":\"{}\"}}",
        "x".repeat(200)
    )
    .into_bytes()
}
