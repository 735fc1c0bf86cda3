//! Tasks as Redis hashes, and back.
//!
//! Fields (all strings): `status`, `stage`, `stages` (JSON), `attempts`, `max_attempts`,
//! `priority`, `nb` (not_before), `token`, `version`, `owner`/`ltoken`/`acq`/`exp` (the lease),
//! `data`, `output`, `error` (JSON), `history` (one `Attempt` JSON per line), `created`,
//! `updated`, `started`, `finished`, `qm` (the task's claim-queue member, kept by the Lua
//! scripts) and `qx` (only on a task `claim_next` set aside as corrupt: the field that failed,
//! see `lua/common.lua`; not decoded, and dropped by the task's next write). Timestamps are
//! integer milliseconds; an absent field is `None`. User JSON is stored as its text and never
//! re-encoded by a script.

use std::collections::HashMap;
use tasktrack_core::{
    Attempt, Error, JobName, LeaseState, Result, Status, Task, TaskId, TaskKey, Timestamp,
};

/// Refuses a `now` this store could not write back: before [`Timestamp::MIN`] (`TS_MIN` in `lua/common.lua`) or after
/// [`Timestamp::MAX`], where RFC 3339 stops (the range the core allows a `not_before`). A job
/// record holds its times as RFC 3339 text, and the scripts write a lease's instants into
/// history so and refuse a lease outside that range: such a `now` was written, and left a job
/// record that no longer decoded (every command of the job `Corrupt`) and leases that their
/// next script refused as corrupt.
pub(crate) fn check_now(now: Timestamp) -> Result<()> {
    if (Timestamp::MIN..=Timestamp::MAX).contains(&now) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "now {now} is out of range: this store writes instants from {} to {}",
        Timestamp::MIN,
        Timestamp::MAX
    )))
}

/// The hash fields of `task` (without `qm`, which the scripts derive). Refuses a task written
/// at a `now` out of range ([`check_now`]): every write stamps `updated_at` with its `now`.
pub(crate) fn encode(task: &Task) -> Result<Vec<(&'static str, String)>> {
    check_now(task.updated_at)?;
    let mut f: Vec<(&'static str, String)> = vec![
        ("status", task.status.as_str().to_string()),
        ("stages", to_json(&task.stages)?),
        ("attempts", task.attempts.to_string()),
        ("max_attempts", task.max_attempts.to_string()),
        ("priority", task.priority.to_string()),
        ("token", task.token.to_string()),
        ("version", task.version.to_string()),
        ("data", to_json(&task.data)?),
        ("created", task.created_at.as_millis().to_string()),
        ("updated", task.updated_at.as_millis().to_string()),
    ];
    if let Some(s) = &task.stage {
        f.push(("stage", s.clone()));
    }
    if let Some(t) = task.not_before {
        f.push(("nb", t.as_millis().to_string()));
    }
    if let Some(l) = &task.lease {
        f.push(("owner", l.owner.clone()));
        f.push(("ltoken", l.token.to_string()));
        f.push(("acq", l.acquired_at.as_millis().to_string()));
        f.push(("exp", l.expires_at.as_millis().to_string()));
    }
    if let Some(o) = &task.output {
        f.push(("output", to_json(o)?));
    }
    if let Some(e) = &task.error {
        f.push(("error", to_json(e)?));
    }
    if !task.history.is_empty() {
        let lines = task
            .history
            .iter()
            .map(to_json)
            .collect::<Result<Vec<_>>>()?;
        f.push(("history", lines.join("\n")));
    }
    if let Some(t) = task.started_at {
        f.push(("started", t.as_millis().to_string()));
    }
    if let Some(t) = task.finished_at {
        f.push(("finished", t.as_millis().to_string()));
    }
    Ok(f)
}

/// Flattens [`encode`]'s fields into script arguments.
pub(crate) fn encode_args(task: &Task) -> Result<Vec<String>> {
    Ok(encode(task)?
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::backend(format!("cannot encode a task field: {e}")))
}

/// A task hash's fields as read, before they are decoded. Redis keeps any bytes, so a value
/// written by another tool may not be UTF-8: it is kept (lossily) and named, so that decoding
/// the task is `Corrupt` naming that field, as for any field that does not decode, while a
/// listing still reads the others (its stage). Read as text in the reply itself, such a value
/// failed the whole reply: every page of the job's listing, `get` and `delete` of the task as a
/// backend error, and every claim that granted it, with the leases it granted to others.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    text: HashMap<String, String>,
    /// The first field whose value is not UTF-8.
    not_utf8: Option<String>,
}

impl Fields {
    /// From `(field, value)` pairs as Redis gives them.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        let mut fields = Fields::default();
        let lossy =
            |e: std::string::FromUtf8Error| String::from_utf8_lossy(e.as_bytes()).into_owned();
        for (name, value) in pairs {
            // A name that is not UTF-8 is no field a task has: decoding ignores it.
            let name = String::from_utf8(name).unwrap_or_else(lossy);
            let value = String::from_utf8(value).unwrap_or_else(|e| {
                fields.not_utf8.get_or_insert_with(|| name.clone());
                lossy(e)
            });
            fields.text.insert(name, value);
        }
        fields
    }

    /// From a flat `[field, value, ...]` reply (what the scripts return).
    pub fn from_flat(flat: Vec<Vec<u8>>) -> Self {
        let mut it = flat.into_iter();
        Self::from_pairs(std::iter::from_fn(|| Some((it.next()?, it.next()?))))
    }

    /// No field at all: the task does not exist.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// A field's value (lossy if it is not UTF-8).
    pub fn get(&self, name: &str) -> Option<&String> {
        self.text.get(name)
    }
}

/// A task from its hash fields; `location` (the key) names it in a [`Error::Corrupt`].
pub(crate) fn decode(job: &JobName, id: &str, fields: &Fields, location: &str) -> Result<Task> {
    let bad = |what: &str| Error::corrupt(location, what);
    if let Some(name) = &fields.not_utf8 {
        return Err(bad(&format!("field {name} is not UTF-8 text")));
    }
    let fields = &fields.text;
    let text = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| bad(&format!("field {name} is missing")))
    };
    let num = |name: &str| -> Result<Option<i64>> {
        fields
            .get(name)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| bad(&format!("field {name} is not an integer: {v:?}")))
            })
            .transpose()
    };
    let req = |name: &str| num(name)?.ok_or_else(|| bad(&format!("field {name} is missing")));
    let time =
        |name: &str| -> Result<Option<Timestamp>> { Ok(num(name)?.map(Timestamp::from_millis)) };
    let int = |name: &str| -> Result<u64> {
        u64::try_from(req(name)?).map_err(|_| bad(&format!("field {name} is negative")))
    };
    let small = |name: &str| -> Result<u32> {
        u32::try_from(req(name)?).map_err(|_| bad(&format!("field {name} is out of range")))
    };
    let json = |name: &str| -> Result<Option<serde_json::Value>> {
        fields
            .get(name)
            .map(|v| {
                serde_json::from_str(v).map_err(|e| bad(&format!("field {name} is not JSON: {e}")))
            })
            .transpose()
    };
    let status: Status = text("status")?
        .parse()
        .map_err(|_| bad("field status is not a known status"))?;
    let lease = match fields.get("owner") {
        Some(owner) => Some(LeaseState {
            owner: owner.clone(),
            token: int("ltoken")?,
            acquired_at: Timestamp::from_millis(req("acq")?),
            expires_at: Timestamp::from_millis(req("exp")?),
        }),
        None => None,
    };
    let history = match fields.get("history") {
        Some(h) if !h.is_empty() => h
            .split('\n')
            .map(|line| {
                serde_json::from_str::<Attempt>(line)
                    .map_err(|e| bad(&format!("bad history entry: {e}")))
            })
            .collect::<Result<Vec<_>>>()?,
        _ => Vec::new(),
    };
    let stages = match json("stages")? {
        Some(v) => serde_json::from_value(v).map_err(|e| bad(&format!("bad stages: {e}")))?,
        None => Vec::new(),
    };
    let error = match json("error")? {
        Some(v) => Some(serde_json::from_value(v).map_err(|e| bad(&format!("bad error: {e}")))?),
        None => None,
    };
    Ok(Task {
        job: job.clone(),
        id: TaskId::new(id).map_err(|e| bad(&e.to_string()))?,
        status,
        stage: fields.get("stage").cloned(),
        stages,
        attempts: small("attempts")?,
        max_attempts: small("max_attempts")?,
        priority: i32::try_from(req("priority")?)
            .map_err(|_| bad("field priority is out of range"))?,
        not_before: time("nb")?,
        lease,
        token: int("token")?,
        version: int("version")?,
        data: json("data")?.unwrap_or(serde_json::Value::Null),
        output: json("output")?,
        error,
        history,
        created_at: Timestamp::from_millis(req("created")?),
        updated_at: Timestamp::from_millis(req("updated")?),
        started_at: time("started")?,
        finished_at: time("finished")?,
    })
}

/// A task from a flat `[field, value, ...]` reply (what the scripts return).
pub(crate) fn decode_flat(key: &TaskKey, flat: Vec<Vec<u8>>, location: &str) -> Result<Task> {
    decode(
        &key.job,
        key.id.as_str(),
        &Fields::from_flat(flat),
        location,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tasktrack_core::{Failure, Outcome};

    #[test]
    fn now_is_taken_where_rfc_3339_writes_it() {
        for ok in [Timestamp::MIN, Timestamp::EPOCH, Timestamp::MAX] {
            assert!(check_now(ok).is_ok(), "{ok:?}");
            assert_eq!(Timestamp::parse(&ok.to_rfc3339()).ok(), Some(ok));
        }
        for bad in [
            Timestamp::MIN.minus(Duration::from_millis(1)),
            Timestamp::from_millis(i64::MAX),
        ] {
            assert!(
                matches!(check_now(bad), Err(Error::InvalidInput(_))),
                "{bad:?}"
            );
            assert_ne!(Timestamp::parse(&bad.to_rfc3339()).ok(), Some(bad));
        }
    }

    #[test]
    fn a_task_round_trips_through_its_hash_fields() {
        let now = Timestamp::from_millis(1_800_000_000_123);
        let mut t = Task {
            job: JobName::new("j").unwrap(),
            id: TaskId::new("a\u{e9}/../%").unwrap(),
            status: Status::InProgress,
            stage: Some("load".into()),
            stages: vec!["extract".into(), "load".into()],
            attempts: 2,
            max_attempts: 3,
            priority: -4,
            not_before: None,
            lease: Some(LeaseState {
                owner: "w".into(),
                token: 7,
                acquired_at: now,
                expires_at: now,
            }),
            token: 7,
            version: 9,
            data: serde_json::json!({"x": 0.123_456_789_012_345_68, "big": 12345678901234567890u64}),
            output: Some(serde_json::Value::Null),
            error: Some(Failure::new("k", "m").with_detail("d")),
            history: vec![],
            created_at: now,
            updated_at: now,
            started_at: Some(now),
            finished_at: None,
        };
        for i in 0..2 {
            t.history.push(Attempt {
                attempt: i,
                stage: None,
                worker: "w\n".into(),
                started: now,
                finished: now,
                outcome: Outcome::Failed,
                error: None,
            });
        }
        let flat: Vec<Vec<u8>> = encode_args(&t)
            .unwrap()
            .into_iter()
            .map(String::into_bytes)
            .collect();
        let key = t.key();
        assert_eq!(decode_flat(&key, flat.clone(), "k").unwrap(), t);
        // One value that is not UTF-8 makes the task corrupt, naming its field.
        let mut bad = flat;
        let at = bad.iter().position(|f| f == b"data").unwrap() + 1;
        bad[at] = b"\"\xff\"".to_vec();
        let err = decode_flat(&key, bad, "k").unwrap_err().to_string();
        assert!(err.contains("field data is not UTF-8"), "{err}");
    }
}
