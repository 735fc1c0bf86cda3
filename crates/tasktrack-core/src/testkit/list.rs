//! Conformance cases: list.
