//! Raw ceiling for mysql: not written yet (the mysql backend's engineer adds it).

use anyhow::{Result, bail};

/// Not measured yet: fails rather than inventing a number.
pub async fn measure(_url: &str, _workers: usize, _ops: usize) -> Result<f64> {
    bail!("the mysql ceiling is not implemented yet; run with --no-ceiling")
}
