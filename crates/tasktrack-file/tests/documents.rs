//! The [`Documents`](tasktrack_core::cas::Documents) cases of the testkit, on a directory.

#![allow(clippy::unwrap_used)]

mod common;

use tasktrack_core::testkit::documents;

#[tokio::test]
async fn a_copy_read_before_a_delete_does_not_match_the_re_created_task() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path()).await;
    documents::a_copy_read_before_a_delete_does_not_match_the_re_created_task(store.documents())
        .await
        .unwrap();
}
