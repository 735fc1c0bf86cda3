//! The shared conformance suite, once per dialect, each test in its own scratch schema (PostgreSQL)
//! or database (MariaDB), dropped afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod postgres {
    use super::support::pg_store as store;
    tasktrack_core::conformance_tests!(store);
}

mod mariadb {
    use super::support::mysql_store as store;
    tasktrack_core::conformance_tests!(store);
}
