//! Conformance cases: jobs.
