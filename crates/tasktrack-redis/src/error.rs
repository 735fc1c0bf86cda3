//! The one place where Redis errors become the core's portable [`Error`].

use redis::RedisError;
use tasktrack_core::Error;

/// The first word of the scripts' answer for a task they refuse to touch because one of its
/// fields is missing or unusable (`corrupt` in `lua/common.lua`):
/// `TASKTRACK_CORRUPT <field> <missing|invalid> <task key>`. Single-task scripts send it as an
/// error reply; `succeed.lua` as one lease's entry (a plain string), so the batch goes on.
const CORRUPT: &str = "TASKTRACK_CORRUPT";

/// Maps a Redis error: connection trouble is [`Error::Unavailable`] naming the server (retryable),
/// a script's refusal of a corrupt task is [`Error::Corrupt`] naming the task's key and the
/// field, anything else (a script error, an unexpected reply) is [`Error::Backend`].
pub(crate) fn map(address: &str, e: RedisError) -> Error {
    if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout() {
        return Error::Unavailable(format!("redis at {address}: {e}"));
    }
    if e.code() == Some(CORRUPT)
        && let Some(err) = e.detail().and_then(corrupt_detail)
    {
        return err;
    }
    Error::Backend(format!("redis at {address}: {e}"))
}

/// A script's `TASKTRACK_CORRUPT ...` text as [`Error::Corrupt`], or `None` if it is not one.
pub(crate) fn corrupt_reply(text: &str) -> Option<Error> {
    corrupt_detail(text.strip_prefix(CORRUPT)?.strip_prefix(' ')?)
}

/// `<field> <missing|invalid> <task key>` (the key last: it may contain spaces).
fn corrupt_detail(detail: &str) -> Option<Error> {
    let mut parts = detail.splitn(3, ' ');
    let (field, why, key) = (parts.next()?, parts.next()?, parts.next()?);
    let what = match (why, field) {
        ("missing", _) => "is missing",
        ("invalid", "status") => "is not a known status",
        ("invalid", "stages") => "is not a JSON list of stage names",
        ("invalid", _) => "is not an integer in its range",
        _ => return None,
    };
    Some(Error::corrupt(
        key,
        format!("field {field} {what} (the script refused the task and wrote nothing)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_reply_names_the_key_and_the_field() {
        let err = corrupt_reply("TASKTRACK_CORRUPT attempts invalid tt:{j}:t:a b").unwrap();
        match err {
            Error::Corrupt { location, message } => {
                assert_eq!(location, "tt:{j}:t:a b");
                assert!(
                    message.starts_with("field attempts is not an integer"),
                    "{message}"
                );
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let missing = corrupt_reply("TASKTRACK_CORRUPT token missing k").unwrap();
        assert!(
            missing.to_string().contains("field token is missing"),
            "{missing}"
        );
        assert_eq!(corrupt_reply("TASKTRACK_CORRUPT attempts"), None);
        assert_eq!(corrupt_reply("TASKTRACK_CORRUPTED a invalid k"), None);
        assert_eq!(corrupt_reply("other"), None);
    }
}
