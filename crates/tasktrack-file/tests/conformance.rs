//! The shared conformance suite against `file://` (no server needed: a temporary directory per
//! test process, which every case shares, each with its own job).

use std::sync::{Arc, OnceLock};
use tasktrack_core::Store;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
    })
    .path()
}

async fn store() -> Option<Arc<dyn Store>> {
    let url = format!("file://{}", dir().display());
    tasktrack_core::testkit::connect_or_skip(
        "file",
        "nothing to start (a temporary directory)",
        async {
            tasktrack_file::open(&url)
                .await
                .map(|s| Arc::new(s) as Arc<dyn Store>)
        },
    )
    .await
}

tasktrack_core::conformance_tests!(store);
