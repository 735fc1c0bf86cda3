//! The shared conformance suite on the mongodb:// backend (one test per case).
//!
//! `scale = 0.1`: the test server (SecantusDB) answers in milliseconds per operation, so the
//! concurrency cases run at a tenth of their size; `tests/concurrency.rs` runs the full-size
//! multi-process check.

mod common;

tasktrack_core::conformance_tests!(common::store, scale = 0.1);
