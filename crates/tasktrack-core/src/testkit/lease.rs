//! Conformance cases: lease.
