//! The shared conformance suite on `sqlite://:memory:`, where reads go through the writer.

use std::sync::Arc;
use tasktrack_core::Store;

async fn store() -> Option<Arc<dyn Store>> {
    tasktrack_core::testkit::connect_or_skip("sqlite", "nothing to start (embedded)", async {
        tasktrack_sqlite::open("sqlite://:memory:")
            .await
            .map(|s| Arc::new(s) as Arc<dyn Store>)
    })
    .await
}

tasktrack_core::conformance_tests!(store);
