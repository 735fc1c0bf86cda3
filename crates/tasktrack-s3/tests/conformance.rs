//! The conformance suite on `s3://` (moto). Each case gets its own prefix in the test bucket.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use std::sync::Arc;
use tasktrack_core::Store;

async fn store() -> Option<Arc<dyn Store>> {
    common::fresh("conformance")
        .await
        .map(|s| s as Arc<dyn Store>)
}

// moto serves one request at a time: the concurrency cases run at a quarter of their size
// (the full-size ones live in tests/concurrency.rs: 2,000 tasks, 8 workers in 2 processes).
tasktrack_core::conformance_tests!(store, scale = 0.25);
