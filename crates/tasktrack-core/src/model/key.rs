//! Task identity: [`JobName`], [`TaskId`] and the pair [`TaskKey`].
//!
//! Both names are non-empty UTF-8 strings of at most [`MAX_KEY_BYTES`] bytes with no control
//! characters. Anything else is rejected with [`Error::InvalidInput`]; nothing is silently
//! altered. Backends that map keys onto paths or object names encode them (see their docs).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest job name or task id, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// Checks the key rules shared by job names, task ids and worker ids.
pub fn validate_key(what: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(format!("{what} must not be empty")));
    }
    if s.len() > MAX_KEY_BYTES {
        return Err(Error::invalid(format!(
            "{what} is {} bytes long; the limit is {MAX_KEY_BYTES}",
            s.len()
        )));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        // `{:?}` quotes and escapes (a tab shows as `\t`), once.
        return Err(Error::invalid(format!(
            "{what} {s:?} contains the control character {c:?}"
        )));
    }
    Ok(())
}

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `s`.
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                validate_key($what, &s)?;
                Ok($name(s))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                $name::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self> {
                $name::new(s)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
    };
}

key_type!(
    /// A job: the namespace a task lives in (a batch, a pipeline).
    JobName,
    "job name"
);
key_type!(
    /// A task's key within its job.
    TaskId,
    "task id"
);

/// The identity of a task: `(job, id)`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskKey {
    /// The job.
    pub job: JobName,
    /// The task's id within the job.
    pub id: TaskId,
}

impl TaskKey {
    /// Builds a key from already validated parts.
    pub fn new(job: JobName, id: TaskId) -> Self {
        TaskKey { job, id }
    }

    /// Validates both parts.
    pub fn parse(job: &str, id: &str) -> Result<Self> {
        Ok(TaskKey::new(JobName::new(job)?, TaskId::new(id)?))
    }
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.job, self.id)
    }
}

impl fmt::Debug for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{:?}", self.job, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_long_and_control_characters() {
        assert!(TaskId::new("").is_err());
        assert!(TaskId::new("a".repeat(513)).is_err());
        assert!(TaskId::new("a".repeat(512)).is_ok());
        assert!(TaskId::new("a\nb").is_err());
        assert!(TaskId::new("a\0b").is_err());
        assert!(TaskId::new("../é/%").is_ok());
    }

    #[test]
    fn a_control_character_is_named_and_the_key_quoted_once() {
        let e = TaskId::new("a\tb").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid input: task id "a\tb" contains the control character '\t'"#
        );
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<JobName>("\"\"").is_err());
        assert_eq!(
            serde_json::from_str::<JobName>("\"j\"").unwrap().as_str(),
            "j"
        );
    }
}
