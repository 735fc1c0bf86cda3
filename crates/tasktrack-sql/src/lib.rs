//! tasktrack PostgreSQL and MySQL backends (being built; see its issue).

use std::sync::Arc;
use tasktrack_core::{Error, Result, Store};

/// Opens the store named by `url` (not implemented yet).
pub async fn open(_url: &str) -> Result<Arc<dyn Store>> {
    Err(Error::Unsupported { backend: "sql", what: "not implemented yet".into() })
}
