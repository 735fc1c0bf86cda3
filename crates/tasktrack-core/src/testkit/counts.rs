//! Conformance cases: counts.
