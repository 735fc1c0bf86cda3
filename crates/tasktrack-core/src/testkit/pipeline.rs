//! Conformance cases: pipeline.
