//! The one place where Redis errors become the core's portable [`Error`].

use redis::RedisError;
use tasktrack_core::Error;

/// Maps a Redis error: connection trouble is [`Error::Unavailable`] naming the server (retryable),
/// anything else (a script error, an unexpected reply) is [`Error::Backend`].
pub(crate) fn map(address: &str, e: RedisError) -> Error {
    if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout() {
        Error::Unavailable(format!("redis at {address}: {e}"))
    } else {
        Error::Backend(format!("redis at {address}: {e}"))
    }
}
