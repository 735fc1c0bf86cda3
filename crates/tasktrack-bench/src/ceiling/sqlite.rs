//! Raw ceiling for sqlite: not written yet (the sqlite backend's engineer adds it).

use anyhow::{Result, bail};

/// Not measured yet: fails rather than inventing a number.
pub async fn measure(_url: &str, _workers: usize, _ops: usize) -> Result<f64> {
    bail!("the sqlite ceiling is not implemented yet; run with --no-ceiling")
}
