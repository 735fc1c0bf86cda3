//! The conformance suite on moto, each case on a table of its own.

mod common;

// scale = 0.2: the concurrency cases at 80 tasks and 200 race rounds; moto serializes every request.
tasktrack_core::conformance_tests!(common::store, scale = 0.2);
