//! Conformance cases: claim.
