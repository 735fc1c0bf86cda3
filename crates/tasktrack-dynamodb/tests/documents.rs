//! The [`Documents`](tasktrack_core::cas::Documents) cases of the testkit, on moto.

#![allow(clippy::unwrap_used)]

mod common;

use tasktrack_core::testkit::documents;

#[tokio::test]
async fn a_copy_read_before_a_delete_does_not_match_the_re_created_task() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    documents::a_copy_read_before_a_delete_does_not_match_the_re_created_task(store.documents())
        .await
        .unwrap();
}
