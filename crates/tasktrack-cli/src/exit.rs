//! Exit codes: the one place a [`tasktrack::Error`] becomes a number a script can test.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done; for `run`, every task it processed succeeded |
//! | 1 | tasktrack's own trouble: store unreachable, corrupt record, backend error, stdout not writable, a machine limit refusing to start a command |
//! | 2 | bad arguments or input (nothing was written) |
//! | 3 | `run`: some processed task ended `failed`, `exhausted`, or lost its lease |
//! | 4 | the job or task does not exist (a command that reads or changes one named job: see [`crate::commands`]) |
//! | 5 | the lifecycle refused (a live lease holds the task, it already succeeded, …) |
//! | 130 | `run` was interrupted (Ctrl-C / SIGTERM / SIGHUP) after releasing its leases, or gave up releasing them (interrupted again, or the store did not answer) |

use tasktrack::{Error, ErrorKind};

/// Success.
pub const OK: u8 = 0;
/// The store or tasktrack itself failed.
pub const FAILURE: u8 = 1;
/// Bad arguments or input.
pub const USAGE: u8 = 2;
/// `run` processed tasks that did not all succeed.
pub const TASKS_FAILED: u8 = 3;
/// Not found.
pub const NOT_FOUND: u8 = 4;
/// Refused by the lifecycle.
pub const REFUSED: u8 = 5;
/// Interrupted by a signal (the shells' 128 + SIGINT).
pub const INTERRUPTED: u8 = 130;

/// The exit code for an error.
pub fn code(error: &Error) -> u8 {
    match error.kind() {
        ErrorKind::InvalidInput => USAGE,
        ErrorKind::NotFound => NOT_FOUND,
        ErrorKind::Refused | ErrorKind::StaleLease | ErrorKind::Conflict => REFUSED,
        ErrorKind::Contention
        | ErrorKind::Unsupported
        | ErrorKind::Corrupt
        | ErrorKind::Unavailable
        | ErrorKind::Backend => FAILURE,
        _ => FAILURE,
    }
}

/// A stable snake_case name for an error's kind, for `--json` error documents.
pub fn kind_name(error: &Error) -> &'static str {
    kind_name_of(error.kind())
}

/// [`kind_name`] of a kind.
pub fn kind_name_of(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Refused => "refused",
        ErrorKind::StaleLease => "stale_lease",
        ErrorKind::Conflict => "conflict",
        ErrorKind::Contention => "contention",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Backend => "backend",
        _ => "error",
    }
}

/// The code of the worse of two outcomes (a usage error beats a refusal beats success).
pub fn worst(a: u8, b: u8) -> u8 {
    let rank = |c: u8| match c {
        OK => 0,
        TASKS_FAILED => 1,
        REFUSED => 2,
        NOT_FOUND => 3,
        USAGE => 4,
        INTERRUPTED => 5,
        _ => 6,
    };
    if rank(b) > rank(a) { b } else { a }
}
