//! The [`Documents`](tasktrack_core::cas::Documents) cases of the testkit, on the test server.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use tasktrack_core::testkit::documents;

#[tokio::test]
async fn a_copy_read_before_a_delete_does_not_match_the_re_created_task() {
    let Some(scratch) = common::scratch().await else {
        return;
    };
    documents::a_copy_read_before_a_delete_does_not_match_the_re_created_task(
        scratch.0.documents(),
    )
    .await
    .unwrap();
}
