//! The shared conformance suite against a real Redis (`TASKTRACK_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379/0`), each case under its own key prefix, removed afterwards.

mod common;

tasktrack_core::conformance_tests!(common::store);
