//! Raw ceiling for postgres: not written yet (the postgres backend's engineer adds it).

use anyhow::{Result, bail};

/// Not measured yet: fails rather than inventing a number.
pub async fn measure(_url: &str, _workers: usize, _ops: usize) -> Result<f64> {
    bail!("the postgres ceiling is not implemented yet; run with --no-ceiling")
}
