//! The conformance suite on the in-process store.

use std::sync::Arc;
use tasktrack_core::{MemoryStore, Store};

async fn store() -> Option<Arc<dyn Store>> {
    Some(Arc::new(MemoryStore::in_memory()))
}

tasktrack_core::conformance_tests!(store);
