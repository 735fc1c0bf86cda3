//! The one place where Redis errors become the core's portable [`Error`].

use redis::RedisError;
use tasktrack_core::Error;

/// The first word of the scripts' answer for a task they refuse to touch because one of its
/// fields is missing or unusable (`corrupt` in `lua/common.lua`):
/// `TASKTRACK_CORRUPT <field> <missing|invalid> <task key>`. Single-task scripts send it as an
/// error reply; `succeed.lua` as one lease's entry (a plain string), so the batch goes on.
const CORRUPT: &str = "TASKTRACK_CORRUPT";

/// The replies of a server that cannot serve the command now but will soon: loading its data
/// (`LOADING`), running a long script (`BUSY`), its primary down or a failover under way
/// (`MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`), demoted to a replica (`READONLY`). The command was
/// refused, not run.
const TRANSIENT: [&str; 6] = [
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "READONLY",
];

/// Maps a Redis error: connection trouble and a server that cannot serve now ([`TRANSIENT`])
/// are [`Error::Unavailable`] naming the server (retryable), a script's refusal of a corrupt
/// task is [`Error::Corrupt`] naming the task's key and the field, anything else (a script
/// error, an unexpected reply) is [`Error::Backend`].
pub(crate) fn map(address: &str, e: RedisError) -> Error {
    if e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.code().is_some_and(|code| TRANSIENT.contains(&code))
    {
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

    /// The error a server's reply `line` (`-CODE detail`) becomes.
    fn reply_error(line: &str) -> RedisError {
        let reply = redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap();
        reply.extract_error().unwrap_err()
    }

    #[test]
    fn a_server_that_cannot_serve_now_is_unavailable() {
        for line in [
            "LOADING Redis is loading the dataset in memory",
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
            "READONLY You can't write against a read only replica.",
        ] {
            let e = map("h:6379", reply_error(line));
            assert!(matches!(e, Error::Unavailable(_)), "{line}: {e:?}");
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = map("h:6379", RedisError::from(refused));
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        // A script's own error is not.
        let e = map("h:6379", reply_error("ERR user_script:1: bad"));
        assert!(matches!(e, Error::Backend(_)), "{e:?}");
    }
}
