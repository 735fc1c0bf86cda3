//! How tasks, jobs and counters map onto DynamoDB items (see the crate docs, `# Layout`).
//!
//! Every key below is built so that two different records can never share it: each kind of
//! record has its own leading tag, fixed-width numbers sort as strings, and a variable-length
//! part that is followed by another one carries its length. Job names and ids are used verbatim
//! (DynamoDB keys are arbitrary UTF-8), so nothing can "escape" its job: keys are compared
//! whole, never by prefix.

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use tasktrack_core::{
    Cursor, Error, Job, JobName, JobState, Result, Status, Task, TaskId, TaskKey, Timestamp,
};

/// A DynamoDB item.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// Table partition key.
pub(crate) const PK: &str = "pk";
/// Table sort key.
pub(crate) const SK: &str = "sk";
/// The record as JSON (the core's stable serde form).
pub(crate) const DOC: &str = "doc";
/// The record's version (what every conditional write compares).
pub(crate) const VERSION: &str = "v";
/// The task's status (also compared by conditional writes).
pub(crate) const STATUS: &str = "st";
/// The task's fencing token (also compared by conditional writes).
pub(crate) const TOKEN: &str = "tok";
/// Claim index partition (job) — present only while the task is claimable at some time.
pub(crate) const CLAIM_PK: &str = "cpk";
/// Claim index partition (stage + job) — present only for claimable tasks at a stage.
pub(crate) const STAGE_PK: &str = "spk";
/// Claim order sort key of both claim indexes.
pub(crate) const CLAIM_SK: &str = "ck";
/// When the task becomes claimable, in Unix milliseconds (the claim query's filter).
pub(crate) const CLAIM_AT: &str = "cat";
/// List index partition: (status, job) for tasks, state for jobs.
pub(crate) const LIST_PK: &str = "lpk";
/// List index sort key: (updated_at, id) for tasks, name for jobs.
pub(crate) const LIST_SK: &str = "lsk";

/// The claim index over all stages of a job.
pub(crate) const CLAIM_INDEX: &str = "claim";
/// The claim index per (job, stage), for pipeline workers that claim by stage.
pub(crate) const STAGE_INDEX: &str = "claim_stage";
/// The list index: tasks by (job, status) ordered by update time; jobs by state.
pub(crate) const LIST_INDEX: &str = "list";

/// The partition holding every job record (sorted by name).
pub(crate) const JOBS_PK: &str = "j";

/// Partition of a job's tasks.
pub(crate) fn task_pk(job: &JobName) -> String {
    format!("t:{job}")
}

/// Name of the counter table beside `table`.
pub(crate) fn counter_table(table: &str) -> String {
    format!("{table}.counters")
}

/// Partition of a job's counter shards (in the counter table).
pub(crate) fn counter_pk(job: &JobName) -> String {
    format!("c:{job}")
}

/// Claim-index partition of a job's tasks at `stage` (the stage's length keeps it unambiguous).
pub(crate) fn stage_pk(job: &JobName, stage: &str) -> String {
    format!("{}:{stage}{job}", stage.len())
}

/// List-index partition of a job's tasks in `status` (the code is fixed-width, two digits).
pub(crate) fn list_pk(job: &JobName, status: Status) -> String {
    format!("{:02}:{job}", status.code())
}

/// List-index partition of the jobs in `state` (starts with a letter, never a digit).
pub(crate) fn job_state_pk(state: JobState) -> String {
    format!("j:{state}")
}

/// A millisecond instant as a fixed-width string that sorts like the instant.
pub(crate) fn sortable_millis(t: Timestamp) -> String {
    // Shift i64 onto u64 so that negative instants sort before positive ones.
    let shifted = (t.as_millis() as u64) ^ (1 << 63);
    format!("{shifted:020}")
}

/// List-index sort key: `(updated_at, id)`, the order of [`tasktrack_core::TaskQuery`].
pub(crate) fn list_sk(updated_at: Timestamp, id: &str) -> String {
    format!("{}|{id}", sortable_millis(updated_at))
}

/// The `(updated_at, id)` a list-index sort key ([`list_sk`]) says, `None` if it does not read
/// as one (an item edited by hand). Only the very key [`list_sk`] writes for that place reads:
/// another text (`+` before the digits, ...) would sort elsewhere than the place it names.
pub(crate) fn parse_list_sk(lsk: &str) -> Option<Cursor> {
    let (millis, id) = lsk.split_once('|')?;
    if millis.len() != 20 {
        return None;
    }
    let shifted: u64 = millis.parse().ok()?;
    let place = Cursor {
        updated_at: Timestamp::from_millis((shifted ^ (1 << 63)) as i64),
        id: TaskId::new(id).ok()?,
    };
    (list_sk(place.updated_at, place.id.as_str()) == lsk).then_some(place)
}

/// Whether the list sort key `lsk` sorts outside the keys of every task record that reads
/// ([`list_sk`] of an instant from [`Timestamp::MIN`] to [`Timestamp::MAX`], the instants a record can hold): below all of
/// them or above all of them. A key edited into such a text is found by a Query of that range
/// alone, which holds no task that reads.
pub(crate) fn outside_records(lsk: &str) -> bool {
    let (floor, ceiling) = records_range();
    lsk < floor.as_str() || lsk >= ceiling.as_str()
}

/// `[floor, ceiling)`: the range of list sort keys that holds every task record's (see
/// [`outside_records`]).
pub(crate) fn records_range() -> (String, String) {
    let floor = sortable_millis(Timestamp::MIN);
    let ceiling = sortable_millis(Timestamp::from_millis(Timestamp::MAX.as_millis() + 1));
    (floor, ceiling)
}

/// A task item's record and version ([`decode`]); `Corrupt` also when its list sort key (`lsk`)
/// is not the one its record gives (edited by hand): every write of the task compares that key
/// (so none could match), and lists order and bound the task by it, not by its record.
pub(crate) fn decode_task(table: &str, item: &Item) -> Result<(Task, String)> {
    let (task, version) = decode::<Task>(table, item)?;
    let lsk = item.get(LIST_SK).and_then(|v| v.as_s().ok());
    let expected = list_sk(task.updated_at, task.id.as_str());
    if lsk != Some(&expected) {
        let message = format!("list key `lsk` is {lsk:?}, not {expected:?} as its record says");
        return Err(Error::corrupt(location(table, item), message));
    }
    Ok((task, version))
}

/// Claim-index sort key: priority descending, then claimable-at, then id — the order of
/// `Documents::claimable`.
pub(crate) fn claim_sk(priority: i32, at: Timestamp, id: &str) -> String {
    // Higher priority first: invert the (shifted) priority so that it sorts ascending.
    let inverted = u32::MAX - ((priority as u32) ^ (1 << 31));
    format!("{inverted:010}{}{id}", sortable_millis(at))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The key of a task's item.
pub(crate) fn task_key(key: &TaskKey) -> Item {
    HashMap::from([
        (PK.into(), s(task_pk(&key.job))),
        (SK.into(), s(key.id.as_str())),
    ])
}

/// The key of a job's item.
pub(crate) fn job_key(job: &JobName) -> Item {
    HashMap::from([(PK.into(), s(JOBS_PK)), (SK.into(), s(job.as_str()))])
}

/// A task as a whole item: the JSON record plus the attributes the indexes and conditions use.
pub(crate) fn task_item(task: &Task) -> Result<Item> {
    let doc = serde_json::to_string(task)
        .map_err(|e| Error::backend(format!("task {}: {e}", task.key())))?;
    let mut item = task_key(&task.key());
    item.insert(DOC.into(), s(doc));
    item.insert(VERSION.into(), n(task.version));
    item.insert(STATUS.into(), s(task.status.as_str()));
    item.insert(TOKEN.into(), n(task.token));
    item.insert(LIST_PK.into(), s(list_pk(&task.job, task.status)));
    item.insert(
        LIST_SK.into(),
        s(list_sk(task.updated_at, task.id.as_str())),
    );
    // Sparse claim indexes: a finished task has no claim attributes, so claims never read it.
    if let Some(at) = task.claimable_at() {
        item.insert(CLAIM_PK.into(), s(task.job.as_str()));
        item.insert(
            CLAIM_SK.into(),
            s(claim_sk(task.priority, at, task.id.as_str())),
        );
        item.insert(CLAIM_AT.into(), n(at.as_millis()));
        if let Some(stage) = &task.stage {
            item.insert(STAGE_PK.into(), s(stage_pk(&task.job, stage)));
        }
    }
    Ok(item)
}

/// An item's size as DynamoDB counts it: each attribute's name (UTF-8 bytes) plus its value — a
/// string's UTF-8 bytes, a binary's raw bytes, a number's significant digits at two per byte
/// plus one byte, one byte for a boolean or null, 3 bytes plus one per element for a list or
/// map (and the elements themselves), the sum of a set's elements.
pub(crate) fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        AttributeValue::Ss(ss) => ss.iter().map(String::len).sum(),
        AttributeValue::Ns(ns) => ns.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(bs) => bs.iter().map(|b| b.as_ref().len()).sum(),
        // A type added to the SDK later: a generous guess (we write none).
        _ => 64,
    }
}

/// A number's size: 1 byte per two significant digits (leading and trailing zeros trimmed),
/// rounded up, plus 1.
fn number_size(n: &str) -> usize {
    let mantissa = n.split(['e', 'E']).next().unwrap_or(n);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.max(1).div_ceil(2) + 1
}

/// A job as a whole item.
pub(crate) fn job_item(job: &Job) -> Result<Item> {
    let doc =
        serde_json::to_string(job).map_err(|e| Error::backend(format!("job {}: {e}", job.name)))?;
    let mut item = job_key(&job.name);
    item.insert(DOC.into(), s(doc));
    item.insert(VERSION.into(), n(job.version));
    item.insert(LIST_PK.into(), s(job_state_pk(job.state)));
    item.insert(LIST_SK.into(), s(job.name.as_str()));
    Ok(item)
}

/// Where an item lives, for [`Error::Corrupt`] messages.
fn location(table: &str, item: &Item) -> String {
    let part = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .map_or("?", String::as_str)
            .to_owned()
    };
    format!(
        "dynamodb://{table} item (pk={:?}, sk={:?})",
        part(PK),
        part(SK)
    )
}

/// Decodes the JSON record of an item, with its version as the revision.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    table: &str,
    item: &Item,
) -> Result<(T, String)> {
    let doc = item
        .get(DOC)
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| Error::corrupt(location(table, item), "no `doc` string attribute"))?;
    let value = serde_json::from_str(doc).map_err(|e| Error::corrupt(location(table, item), e))?;
    let version = item
        .get(VERSION)
        .and_then(|v| v.as_n().ok())
        .ok_or_else(|| Error::corrupt(location(table, item), "no `v` number attribute"))?;
    Ok((value, version.clone()))
}

/// The counter attribute of `(stage, status)`: `n:<status>` or `n:<status>:<stage>`.
/// Status names contain no `:`, so the first two separators split it back unambiguously.
///
/// `pending` and `in_progress` share one attribute, `n:pending` ("open" tasks): claims,
/// releases and reclaims of expired leases then move no count, so each is a single conditional
/// `PutItem` rather than a transaction. `counts` splits the open tasks with a Query of the
/// list index's `in_progress` partition, which holds only the tasks under a lease.
pub(crate) fn counter_attr(stage: Option<&str>, status: Status) -> String {
    let status = if status == Status::InProgress {
        Status::Pending
    } else {
        status
    };
    match stage {
        None => format!("n:{status}"),
        Some(stage) => format!("n:{status}:{stage}"),
    }
}

/// The `(stage, status)` of a counter attribute, or `None` for other attributes.
pub(crate) fn parse_counter_attr(name: &str) -> Option<(Option<String>, Status)> {
    let rest = name.strip_prefix("n:")?;
    let (status, stage) = match rest.split_once(':') {
        Some((status, stage)) => (status, Some(stage.to_owned())),
        None => (rest, None),
    };
    Some((stage, status.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortable_millis_orders_like_instants() {
        let ts = [-5_000, -1, 0, 1, 1_800_000_000_000, i64::MAX].map(Timestamp::from_millis);
        let keys: Vec<String> = ts.iter().map(|t| sortable_millis(*t)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(keys.iter().all(|k| k.len() == 20));
    }

    #[test]
    fn list_sk_reads_back() {
        for ms in [-5_000, -1, 0, 1_800_000_000_000, i64::MAX] {
            let at = parse_list_sk(&list_sk(Timestamp::from_millis(ms), "a|b")).unwrap();
            assert_eq!((at.updated_at.as_millis(), at.id.as_str()), (ms, "a|b"));
        }
        for bad in [
            "",
            "12|a",
            "x|a",
            "00000000000000000001a",
            "00000000000000000001|",
            "+0000000000000000001|a",
        ] {
            assert!(parse_list_sk(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_records_range_holds_the_list_key_of_every_instant_a_record_can_hold() {
        let readable = |ms: i64| {
            let t = Timestamp::from_millis(ms);
            Timestamp::parse(&t.to_rfc3339()).is_ok_and(|back| back == t)
        };
        let (first, last) = (Timestamp::MIN.as_millis(), Timestamp::MAX.as_millis());
        assert!(readable(first) && readable(last));
        assert!(!readable(first - 1) && !readable(last + 1));
        for ms in [first, -1, 0, 1_800_000_000_000, last] {
            let key = list_sk(Timestamp::from_millis(ms), "a");
            assert!(!outside_records(&key), "{key}");
        }
        for key in ["", "!", "12345", "edited by hand", "9223309869635575807|a"] {
            assert!(outside_records(key), "{key}");
        }
        let past = list_sk(Timestamp::from_millis(last + 1), "a");
        assert!(outside_records(&past));
    }

    #[test]
    fn claim_sk_orders_priority_descending_then_time_then_id() {
        let t = Timestamp::from_millis;
        let order = [
            claim_sk(i32::MAX, t(9), "z"),
            claim_sk(5, t(1), "b"),
            claim_sk(5, t(2), "a"),
            claim_sk(0, t(0), "a"),
            claim_sk(0, t(0), "b"),
            claim_sk(-3, t(0), "a"),
            claim_sk(i32::MIN, t(0), "a"),
        ];
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
    }

    #[test]
    fn partitions_of_different_jobs_never_coincide() {
        let j = |s: &str| JobName::new(s).unwrap();
        assert_ne!(stage_pk(&j("b"), "a"), stage_pk(&j("ab"), ""));
        assert_ne!(stage_pk(&j("1:xb"), "a"), stage_pk(&j("b"), "a1:x"));
        assert_ne!(
            list_pk(&j("0:a"), Status::Pending),
            list_pk(&j("a"), Status::Pending)
        );
        assert!(job_state_pk(JobState::Started).starts_with('j'));
    }

    #[test]
    fn item_sizes_follow_dynamodb_rules() {
        // Numbers: significant digits (leading and trailing zeros trimmed), two per byte, + 1.
        for (number, size) in [
            ("0", 2),
            ("7", 2),
            ("12", 2),
            ("123", 3),
            ("1000", 2),
            ("-0012.50", 3),
            ("12345678901234567890", 11),
            ("1.5e10", 2),
        ] {
            assert_eq!(number_size(number), size, "{number}");
        }
        let item = Item::from([
            ("pk".to_owned(), s("t:é")), // é is 2 bytes of UTF-8
            ("v".to_owned(), n(12)),
            (
                "l".to_owned(),
                AttributeValue::L(vec![s("ab"), AttributeValue::Bool(true)]),
            ),
        ]);
        assert_eq!(
            item_size(&item),
            (2 + 4) + (1 + 2) + (1 + 3 + (1 + 2) + (1 + 1))
        );
    }

    #[test]
    fn counter_attrs_round_trip() {
        for (stage, status) in [
            (None, Status::Pending),
            (Some("load:x"), Status::Succeeded),
            (Some(""), Status::Failed),
        ] {
            let name = counter_attr(stage, status);
            assert_eq!(
                parse_counter_attr(&name),
                Some((stage.map(str::to_owned), status))
            );
        }
        assert_eq!(parse_counter_attr("pk"), None);
        assert_eq!(
            counter_attr(Some("s"), Status::InProgress),
            counter_attr(Some("s"), Status::Pending)
        );
    }
}
