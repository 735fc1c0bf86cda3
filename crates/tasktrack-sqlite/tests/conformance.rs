//! The shared conformance suite on SQLite: every case on its own temporary database file.

use std::sync::Arc;
use tasktrack_core::Store;

/// A fresh store on a fresh file. The directory is leaked on purpose: it must outlive the store,
/// which the suite holds until the case ends (the OS temp dir is cleaned by the system).
async fn store() -> Option<Arc<dyn Store>> {
    let dir = tempfile::tempdir().ok()?.keep();
    let url = format!("sqlite://{}", dir.join("conformance.db").display());
    tasktrack_core::testkit::connect_or_skip("sqlite", "nothing to start (embedded)", async move {
        tasktrack_sqlite::open(&url)
            .await
            .map(|s| Arc::new(s) as Arc<dyn Store>)
    })
    .await
}

tasktrack_core::conformance_tests!(store);
