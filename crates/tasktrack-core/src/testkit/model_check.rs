//! Conformance cases: model_check.
