//! Conformance cases: create.
