//! Conformance cases: admin.
