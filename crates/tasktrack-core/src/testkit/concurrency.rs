//! Conformance cases: concurrency.
