//! The one place where object_store and HTTP errors become tasktrack's portable [`Error`].
//!
//! Conditional-write outcomes (`412 Precondition Failed`, "already exists", "not found") are not
//! errors for the CAS adapter: the callers match them first ([`Outcome`]) and only what is left
//! comes here.

use object_store::client::{HttpError, HttpErrorKind};
use std::error::Error as _;
use tasktrack_core::Error;

/// Maps an object_store error met while doing `what` on `location` against `endpoint`.
///
/// Connection trouble (refused, reset, timed out) is [`Error::Unavailable`] naming the endpoint;
/// missing credentials or permission is [`Error::Backend`] saying so; the rest is
/// [`Error::Backend`] with object_store's full message (which carries S3's error code and
/// message, e.g. `NoSuchBucket`), never a bare "service error".
pub fn map(err: object_store::Error, endpoint: &str, what: &str, location: &str) -> Error {
    if is_connection_trouble(&err) {
        return Error::Unavailable(format!(
            "S3 at {endpoint}: {what} {location}: {}",
            chain(&err)
        ));
    }
    match &err {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Error::Backend(format!(
            "S3 at {endpoint} refused {what} {location} (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy): {}",
            chain(&err)
        )),
        _ => Error::Backend(format!(
            "S3 at {endpoint}: {what} {location}: {}",
            chain(&err)
        )),
    }
}

/// Maps a reqwest error of a presigned request (conditional DELETE, CreateBucket).
pub fn map_http(err: &reqwest::Error, endpoint: &str, what: &str, location: &str) -> Error {
    let text = chain(err);
    if err.is_connect() || err.is_timeout() || err.is_request() {
        Error::Unavailable(format!("S3 at {endpoint}: {what} {location}: {text}"))
    } else {
        Error::Backend(format!("S3 at {endpoint}: {what} {location}: {text}"))
    }
}

/// A record that exists but cannot be read as what it should be.
pub fn corrupt(location: &str, err: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("s3 object {location}"), err)
}

fn is_connection_trouble(err: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = err.source();
    while let Some(e) = source {
        if let Some(http) = e.downcast_ref::<HttpError>()
            && matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
                    | HttpErrorKind::Request
            )
        {
            return true;
        }
        if let Some(r) = e.downcast_ref::<reqwest::Error>()
            && (r.is_connect() || r.is_timeout())
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// The error and all its sources, `: `-separated, without repeats (object_store's messages
/// often embed their source's text already).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}
