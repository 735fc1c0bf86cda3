//! The one place where AWS errors become the core's portable [`Error`].
//!
//! Connection trouble (DNS, refused connections, timeouts) and server-side throttling are
//! [`Error::Unavailable`] naming the endpoint, so callers know a retry may help; everything else
//! is [`Error::Backend`] with the SDK's full error context (code, message, request id) rather
//! than its bare "service error".
//!
//! Except a write's `ValidationException` about what the write carries (an item or key over
//! DynamoDB's size limits: [`content_refusal`]): that one is the task's fault, so its writer
//! answers [`Error::InvalidInput`] naming the task ([`refused_write`]), which `tasktrack run`
//! and the `Tracker` record as the attempt's failure before going on. A server with a lower
//! item limit than `?item_limit=` (moto: 405,000 bytes) refuses such items itself, with a
//! `ValidationException` for the whole request (`PutItem`, or `TransactWriteItems` whatever
//! else it carries). Any other `ValidationException` (a bad expression, a missing key
//! attribute: a bug in the request we built) stays [`Error::Backend`].

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

/// The messages (their start, compared without case) of the `ValidationException`s that are about
/// what a write carries rather than how the request is made, as AWS and moto word them: an item
/// over the item size limit (`PutItem`, `TransactWriteItems`; `UpdateItem`), a key over the key
/// size limits.
const CONTENT_REFUSALS: &[&str] = &[
    "item size has exceeded",
    "item size to update has exceeded",
    "one or more parameter values were invalid: size of hashkey has exceeded",
    "one or more parameter values were invalid: aggregated size of all range keys has exceeded",
    "hash primary key values must be under",
    "range primary key values must be under",
];

/// Whether `message`, a `ValidationException`'s, is about what the request carries.
pub(crate) fn is_content_refusal(message: &str) -> bool {
    let message = message.trim_start().to_lowercase();
    CONTENT_REFUSALS.iter().any(|m| message.starts_with(m))
}

/// AWS's message when `err` is a `ValidationException` about what the request carries (an item
/// too large, ...): nothing of the request was written, and sending it again would fail again.
/// `None` for any other error, including the `ValidationException`s about how the request is
/// made.
pub(crate) fn content_refusal<E, R>(err: &SdkError<E, R>) -> Option<String>
where
    E: ProvideErrorMetadata,
{
    let SdkError::ServiceError(service) = err else {
        return None;
    };
    let error = service.err();
    if error.code() != Some("ValidationException") {
        return None;
    }
    let message = error.message()?;
    is_content_refusal(message).then(|| message.to_owned())
}

/// The error of the writer of `subject` (`task job/id`, `job name`) whose `op` AWS refused with a
/// [`content_refusal`]: [`Error::InvalidInput`] naming it, with AWS's message.
pub(crate) fn refused_write(op: &str, subject: &str, message: &str) -> Error {
    Error::InvalidInput(format!(
        "DynamoDB refused the {op} of {subject} (ValidationException: {message}); nothing of it \
         was written"
    ))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_about_the_content_are_told_from_bugs_in_the_request() {
        for content in [
            "Item size has exceeded the maximum allowed size",
            "Item size to update has exceeded the maximum allowed size",
            "One or more parameter values were invalid: Size of hashkey has exceeded the \
             maximum size limit of2048 bytes",
            "One or more parameter values were invalid: Aggregated size of all range keys has \
             exceeded the size limit of 1024 bytes",
            "Hash primary key values must be under 2048 bytes",
        ] {
            assert!(is_content_refusal(content), "{content}");
        }
        for bug in [
            "Transaction request cannot include multiple operations on one item",
            "One or more parameter values were invalid: Missing the key sk in the item",
            "Invalid ConditionExpression: Syntax error; token: \"=\", near: \"= =\"",
            "The provided key element does not match the schema",
            "ExpressionAttributeValues contains invalid key: Syntax error; key: \"v\"",
            "Invalid UpdateExpression: Expression size has exceeded the maximum allowed size",
            "",
        ] {
            assert!(!is_content_refusal(bug), "{bug}");
        }
    }

    #[test]
    fn a_refused_write_is_invalid_input_naming_its_subject() {
        let err = refused_write(
            "write",
            "task j/a",
            "Item size has exceeded the maximum allowed size",
        );
        let Error::InvalidInput(m) = &err else {
            panic!("{err:?}");
        };
        assert!(m.contains("write of task j/a"), "{m}");
        assert!(m.contains("Item size has exceeded"), "{m}");
    }
}
