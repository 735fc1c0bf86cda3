//! The one place where AWS errors become the core's portable [`Error`].
//!
//! Connection trouble (DNS, refused connections, timeouts) and server-side throttling are
//! [`Error::Unavailable`] naming the endpoint, so callers know a retry may help; everything else
//! is [`Error::Backend`] with the SDK's full error context (code, message, request id) rather
//! than its bare "service error".

use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use std::error::Error as StdError;
use tasktrack_core::Error;

/// Service error codes after which the same request may succeed later.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
];

/// Maps a failed SDK call `op` against `endpoint` onto [`Error`].
pub(crate) fn sdk_error<E, R>(op: &str, endpoint: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let context = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Error::Unavailable(format!(
            "DynamoDB at {endpoint} did not answer {op}: {context}"
        )),
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("unknown");
            if TRANSIENT_CODES.contains(&code) {
                Error::Unavailable(format!(
                    "DynamoDB at {endpoint} refused {op} for now ({code}): {context}"
                ))
            } else if code == "ResourceNotFoundException" {
                Error::Backend(format!(
                    "DynamoDB {op} at {endpoint}: table or index not found (run `tasktrack init` to create it): {context}"
                ))
            } else {
                Error::Backend(format!(
                    "DynamoDB {op} at {endpoint} failed ({code}): {context}"
                ))
            }
        }
        _ => Error::Backend(format!("DynamoDB {op} at {endpoint} failed: {context}")),
    }
}

/// A request we built was incomplete: a bug here, reported rather than panicking.
pub(crate) fn build_error(what: &str, err: BuildError) -> Error {
    Error::Backend(format!("could not build a DynamoDB {what} request: {err}"))
}
