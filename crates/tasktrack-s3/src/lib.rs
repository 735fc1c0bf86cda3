//! tasktrack s3 backend (being built; see its issue).

use tasktrack_core::{Error, MemoryStore, Result};

/// Opens the store named by `url` (not implemented yet).
pub async fn open(_url: &str) -> Result<MemoryStore> {
    Err(Error::Unsupported { backend: "s3", what: "not implemented yet".into() })
}
