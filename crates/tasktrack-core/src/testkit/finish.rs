//! Conformance cases: finish.
