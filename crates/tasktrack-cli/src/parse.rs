//! Parsing what users type: durations, backoffs, JSON, ids, statuses, id files.
//!
//! Every function returns [`Error::InvalidInput`] with a one-line message naming the flag, so a
//! typo ends in exit code 2 before anything is written.

use serde_json::Value;
use std::time::Duration;
use tasktrack::{Backoff, Error, JobName, NewTask, Result, Status, TaskId, TaskKey};

/// A duration like `30s`, `5m`, `1h 30m`, `250ms`.
pub fn duration(flag: &str, s: &str) -> Result<Duration> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        Error::invalid(format!(
            "--{flag} {s:?} is not a duration like 30s, 5m or 2h: {e}"
        ))
    })
}

/// A duration that must be longer than zero (leases, intervals).
pub fn positive_duration(flag: &str, s: &str) -> Result<Duration> {
    let d = duration(flag, s)?;
    if d.as_millis() == 0 {
        return Err(Error::invalid(format!(
            "--{flag} must be at least 1ms, got {s:?}"
        )));
    }
    Ok(d)
}

/// A lease length: longer than zero and at most a century ([`tasktrack::lifecycle::MAX_LEASE`]),
/// checked here so that a `run` refuses it before it starts anything.
pub fn lease(s: &str) -> Result<Duration> {
    let d = positive_duration("lease", s)?;
    let max = tasktrack::lifecycle::MAX_LEASE;
    if d > max {
        // The limit is 100 years of 365 days, and `100y` is 100 of humantime's 365.25-day
        // years, just over it: the limit is named in days, so that the message does not read
        // "at most 100 years" to someone who typed exactly that.
        return Err(Error::invalid(format!(
            "--lease {s:?} is over the limit of {}d (100 years of 365 days)",
            max.as_secs() / 86_400
        )));
    }
    tasktrack::lifecycle::check_lease_length(d)
        .map_err(|e| Error::invalid(format!("--lease {s:?}: {}", strip_prefix(&e))))?;
    Ok(d)
}

/// `INITIAL..MAX` (`1s..5m`), a single `INITIAL` (capped at 5 minutes or itself), or `none`.
/// The store keeps whole milliseconds: a delay above zero but below 1 ms is refused rather than
/// stored as zero (`1ns..2ns` would silently be no backoff at all).
pub fn backoff(s: &str) -> Result<Backoff> {
    if s.trim() == "none" {
        return Ok(Backoff::NONE);
    }
    let delay = |part: &str| {
        let d = duration("backoff", part)?;
        if !d.is_zero() && d < Duration::from_millis(1) {
            return Err(Error::invalid(format!(
                "--backoff {s:?}: {} is below 1ms, the smallest delay the store keeps (it counts \
                 whole milliseconds); use 0s or none for no backoff",
                humantime::format_duration(d)
            )));
        }
        // As long as the longest lease: a longer wait is a typo (`500000000y`), and one that
        // saturates the retry time at the year 9999, where `run` would wait for it forever.
        let max = tasktrack::lifecycle::MAX_LEASE;
        if d > max {
            return Err(Error::invalid(format!(
                "--backoff {s:?}: {} is over the limit of {}d (100 years of 365 days)",
                part.trim(),
                max.as_secs() / 86_400
            )));
        }
        Ok(d)
    };
    match s.split_once("..") {
        Some((a, b)) => {
            let (initial, max) = (delay(a)?, delay(b)?);
            if max < initial {
                return Err(Error::invalid(format!(
                    "--backoff {s:?}: the maximum is below the initial delay"
                )));
            }
            Ok(Backoff::new(initial, max))
        }
        None => {
            let initial = delay(s)?;
            Ok(Backoff::new(initial, initial.max(Duration::from_secs(300))))
        }
    }
}

/// A JSON value given on the command line.
pub fn json(flag: &str, s: &str) -> Result<Value> {
    serde_json::from_str(s).map_err(|e| Error::invalid(format!("--{flag} is not valid JSON: {e}")))
}

/// A job name.
pub fn job(s: &str) -> Result<JobName> {
    JobName::new(s)
}

/// A task key.
pub fn key(job: &JobName, id: &str) -> Result<TaskKey> {
    Ok(TaskKey::new(job.clone(), TaskId::new(id)?))
}

/// Task ids, all validated before anything is written.
pub fn ids(ids: &[String]) -> Result<Vec<TaskId>> {
    ids.iter().map(|s| TaskId::new(s.as_str())).collect()
}

/// A comma-separated status list; empty is an error.
pub fn statuses(s: &str) -> Result<Vec<Status>> {
    let list = Status::parse_list(s)?;
    if list.is_empty() {
        return Err(Error::invalid("--status needs at least one status"));
    }
    Ok(list)
}

/// One line of an id file: a JSON object `{"id": …, "data": …, "priority": …, "max_attempts": …}`
/// when it starts with `{` after any leading whitespace (`"id"` a string, or a number taken as
/// its JSON text), otherwise the whole line is the id (nothing trimmed but the line ending).
/// Returns `None` for an empty line.
pub fn task_line(
    line: &str,
    lineno: usize,
    source: &str,
    defaults: &NewTask,
) -> Result<Option<NewTask>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    // A line of nothing but blanks is a gap in the list, not an id of spaces nobody would see.
    if line.trim().is_empty() {
        return Ok(None);
    }
    let at = |e: Error| Error::invalid(format!("{source}:{lineno}: {}", strip_prefix(&e)));
    if !line.trim_start().starts_with('{') {
        let id = TaskId::new(line).map_err(at)?;
        return Ok(Some(NewTask {
            id,
            ..defaults.clone()
        }));
    }
    let value: Value = serde_json::from_str(line)
        .map_err(|e| Error::invalid(format!("{source}:{lineno}: not a valid JSON line: {e}")))?;
    let obj = value.as_object().ok_or_else(|| {
        Error::invalid(format!("{source}:{lineno}: a JSON line must be an object"))
    })?;
    if let Some(unknown) = obj
        .keys()
        .find(|k| !["id", "data", "priority", "max_attempts"].contains(&k.as_str()))
    {
        return Err(Error::invalid(format!(
            "{source}:{lineno}: unknown field {unknown:?} (expected id, data, priority, max_attempts)"
        )));
    }
    let id = match obj.get("id") {
        Some(Value::String(s)) => TaskId::new(s.as_str()).map_err(at)?,
        Some(Value::Number(n)) => TaskId::new(n.to_string()).map_err(at)?,
        _ => {
            return Err(Error::invalid(format!(
                "{source}:{lineno}: \"id\" must be a string or a number"
            )));
        }
    };
    let mut task = NewTask {
        id,
        ..defaults.clone()
    };
    if let Some(data) = obj.get("data") {
        task.data = data.clone();
    }
    if let Some(p) = obj.get("priority") {
        task.priority = p
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{source}:{lineno}: \"priority\" must be an integer"
                ))
            })?;
    }
    if let Some(m) = obj.get("max_attempts") {
        let m = m
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .filter(|m| *m >= 1)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{source}:{lineno}: \"max_attempts\" must be a positive integer"
                ))
            })?;
        task.max_attempts = Some(m);
    }
    Ok(Some(task))
}

/// The message of an `InvalidInput` without its "invalid input: " prefix (for re-wrapping).
pub fn strip_prefix(e: &Error) -> String {
    match e {
        Error::InvalidInput(m) => m.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> NewTask {
        NewTask::new(TaskId::new("x").unwrap())
    }

    #[test]
    fn durations_and_backoffs() {
        assert_eq!(duration("lease", "30s").unwrap(), Duration::from_secs(30));
        assert!(
            positive_duration("lease", "0s")
                .unwrap_err()
                .to_string()
                .contains("at least 1ms")
        );
        assert!(duration("lease", "soon").is_err());
        assert_eq!(lease("5m").unwrap(), Duration::from_secs(300));
        assert!(
            lease("500000y")
                .unwrap_err()
                .to_string()
                .contains("--lease \"500000y\" is over the limit of 36500d")
        );
        assert_eq!(lease("36500d").unwrap(), tasktrack::lifecycle::MAX_LEASE);
        // `100y` is 100 years of 365.25 days: over the limit, and the message must not say
        // "at most 100 years" to someone who typed 100 years.
        let e = lease("100y").unwrap_err().to_string();
        assert!(
            e.ends_with("--lease \"100y\" is over the limit of 36500d (100 years of 365 days)"),
            "{e}"
        );
        let e = backoff("1s..500000000y").unwrap_err().to_string();
        assert!(e.contains("500000000y is over the limit of 36500d"), "{e}");
        assert!(backoff("36500d").is_ok());
        let b = backoff("1s..5m").unwrap();
        assert_eq!((b.initial_ms, b.max_ms), (1_000, 300_000));
        assert_eq!(backoff("none").unwrap(), Backoff::NONE);
        assert!(backoff("5m..1s").is_err());
        assert!(
            backoff("1ns..2ns")
                .unwrap_err()
                .to_string()
                .contains("1ns is below 1ms")
        );
        let b = backoff("1ms..2ms").unwrap();
        assert_eq!((b.initial_ms, b.max_ms), (1, 2));
    }

    #[test]
    fn id_lines_plain_and_json() {
        let t = task_line("a b\r", 1, "f", &defaults()).unwrap().unwrap();
        assert_eq!(t.id.as_str(), "a b");
        assert!(task_line("", 1, "f", &defaults()).unwrap().is_none());
        for blank in ["   ", " \t\r", "\u{a0}"] {
            let skipped = task_line(blank, 1, "f", &defaults()).unwrap();
            assert!(skipped.is_none(), "{blank:?} is a gap, not an id");
        }
        let t = task_line(" padded ", 1, "f", &defaults()).unwrap().unwrap();
        assert_eq!(t.id.as_str(), " padded ", "the whole line is the id");
        let t = task_line(
            r#"{"id":"x1","data":{"k":1},"priority":5}"#,
            2,
            "f",
            &defaults(),
        )
        .unwrap()
        .unwrap();
        assert_eq!((t.id.as_str(), t.priority), ("x1", 5));
        assert_eq!(t.data["k"], 1);
        let e = task_line(r#"{"id":"x1","data":"#, 3, "f", &defaults()).unwrap_err();
        assert!(e.to_string().contains("f:3: not a valid JSON line"), "{e}");
        assert!(task_line(r#"{"id":""}"#, 4, "f", &defaults()).is_err());
        assert!(task_line("a\u{7}b", 5, "f", &defaults()).is_err());
        assert!(task_line(r#"{"idd":"a"}"#, 6, "f", &defaults()).is_err());
    }

    /// As docs/cli.md says: a JSON line may be indented, and its id may be a number.
    #[test]
    fn json_lines_may_be_indented_and_take_numeric_ids() {
        let t = task_line(" \t{\"id\": 17}", 1, "f", &defaults())
            .unwrap()
            .unwrap();
        assert_eq!(t.id.as_str(), "17");
        let e = task_line(r#"{"id": true}"#, 2, "f", &defaults()).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("f:2: \"id\" must be a string or a number"),
            "{e}"
        );
    }

    #[test]
    fn status_lists() {
        assert_eq!(
            statuses("failed,exhausted").unwrap(),
            vec![Status::Failed, Status::Exhausted]
        );
        assert!(
            statuses("failed,bogus")
                .unwrap_err()
                .to_string()
                .contains("unknown status \"bogus\"")
        );
        assert!(statuses("").is_err());
    }
}
