//! What the SQL ceilings (postgres, mysql) share: their connections, opened with sqlx.

use anyhow::{Context, Result};
use sqlx::Connection;

/// A connection to `url` (a driver URL); an error names the server, its password redacted.
pub async fn connect<C: Connection>(url: &str) -> Result<C> {
    C::connect(url)
        .await
        .with_context(|| format!("connecting to {}", tasktrack::redact_url(url)))
}

/// `n` connections to `url`, one for each worker's loop.
pub async fn connect_each<C: Connection>(url: &str, n: usize) -> Result<Vec<C>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(connect(url).await?);
    }
    Ok(conns)
}
