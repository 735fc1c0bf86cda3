//! `mysql://` / `mariadb://` — the MySQL / MariaDB backend (in progress).

use std::sync::Arc;
use tasktrack_core::{Error, Result, Store};

/// The MySQL / MariaDB store (not implemented yet).
#[derive(Debug)]
pub struct MySqlStore;

impl MySqlStore {
    /// Not implemented yet.
    pub async fn connect(_url: &str) -> Result<Arc<dyn Store>> {
        Err(Error::Unsupported {
            backend: "mysql",
            what: "not implemented yet".into(),
        })
    }
}
