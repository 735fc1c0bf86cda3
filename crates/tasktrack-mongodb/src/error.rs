//! The one place where the driver's errors become the core's portable [`Error`].
//!
//! - connection trouble (I/O, server selection, DNS, a cleared pool) → [`Error::Unavailable`],
//!   naming the hosts, so callers may retry;
//! - a duplicate key is not an error here: the inserts that can hit one answer `false`
//!   ("already exists"), as the [`tasktrack_core::cas::Documents`] contract asks
//!   ([`is_duplicate_key`]);
//! - everything else → [`Error::Backend`] with the driver's message. Unreadable documents are
//!   [`Error::Corrupt`] (see `codec`).

use mongodb::error::{ErrorKind, WriteFailure};
use tasktrack_core::Error;

/// MongoDB's error code for a unique index violation (E11000).
const DUPLICATE_KEY: i32 = 11000;

/// Maps a driver error onto the portable error; `hosts` is the `host:port` list of the URL.
pub fn map(e: mongodb::error::Error, hosts: &str) -> Error {
    match e.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::ConnectionPoolCleared { .. } => {
            Error::Unavailable(format!("mongodb at {hosts}: {e}"))
        }
        _ if e.contains_label("RetryableWriteError")
            || e.contains_label("TransientTransactionError") =>
        {
            Error::Unavailable(format!("mongodb at {hosts}: {e}"))
        }
        _ => Error::Backend(format!("mongodb at {hosts}: {e}")),
    }
}

/// Whether `e` is a single write refused by a unique index (the key exists already).
pub fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// For an unordered `insert_many` that failed: the positions refused as duplicates, or `None`
/// when anything else went wrong (then the whole error must be reported).
pub fn duplicate_positions(e: &mongodb::error::Error) -> Option<Vec<usize>> {
    let ErrorKind::InsertMany(failure) = e.kind.as_ref() else {
        return None;
    };
    if failure.write_concern_error.is_some() {
        return None;
    }
    let errors = failure.write_errors.as_ref()?;
    if errors.iter().all(|w| w.code == DUPLICATE_KEY) {
        Some(errors.iter().map(|w| w.index).collect())
    } else {
        None
    }
}
