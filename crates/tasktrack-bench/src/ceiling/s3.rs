//! Raw ceiling for s3: not written yet (the s3 backend's engineer adds it).

use anyhow::{Result, bail};

/// Not measured yet: fails rather than inventing a number.
pub async fn measure(_url: &str, _workers: usize, _ops: usize) -> Result<f64> {
    bail!("the s3 ceiling is not implemented yet; run with --no-ceiling")
}
