//! Conformance cases: keys.
