//! The [`Documents`](tasktrack_core::cas::Documents) cases of the testkit, on the test server.

mod common;

use tasktrack_core::Error;
use tasktrack_core::testkit::{self, documents};

#[tokio::test]
async fn a_copy_read_before_a_delete_does_not_match_the_re_created_task() -> Result<(), Error> {
    let store = match common::connect(&common::unique_prefix()).await {
        Ok(store) => store,
        Err(Error::Unavailable(e)) if !testkit::in_ci() => {
            eprintln!(
                "SKIPPED: server unreachable ({e}); {}",
                common::HOW_TO_START
            );
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    documents::a_copy_read_before_a_delete_does_not_match_the_re_created_task(store.documents())
        .await
}
