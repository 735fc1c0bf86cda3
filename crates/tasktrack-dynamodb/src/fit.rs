//! Keeping every task within one DynamoDB item (400 KB), whatever its attempts add to it.
//!
//! A task is one item, and DynamoDB refuses an item over 400 KB. What a task holds grows with
//! its life: a claim adds a lease, a failure adds its error twice (as the last error and in the
//! history record of the attempt), an expired lease adds a record. A task whose data is large
//! could thus grow past the limit through its attempts alone, and a write that AWS refuses
//! leaves the task where it was: a claim refused that way would be tried again at the head of
//! the queue by every `claim_next`, blocking the job. Hence three rules, applied to every task
//! write before any request ([`fit`]):
//!
//! 1. **Data and output leave room.** A write that makes the task's data or output larger (a
//!    create, a data patch, a success) must leave [`RESERVED_BYTES`] of the item free, for the
//!    lease, errors and history records the store adds later. Otherwise it is refused with
//!    [`Error::InvalidInput`] naming the task, its size and the limit, and nothing is written.
//! 2. **Failure records give way.** A write that would make the item too large keeps within
//!    it by cutting what the store keeps about failures, in this order, until the item fits:
//!    the details (tracebacks) of the history records, oldest first, each replaced by a note of
//!    how many bytes were cut (the newest record's is a copy of the last error's, so it goes
//!    last); the start of the last error's detail (its end, where a traceback names the error,
//!    is kept, after a note of how many bytes were cut); the oldest history records. Data,
//!    output, error kinds and messages are never cut. So a `fail` with a huge traceback is
//!    recorded, with the traceback's end, and the newest tracebacks are the ones kept.
//! 3. **A claim that cannot fit exhausts the task.** If the lease still does not fit (data and
//!    output fill the item: a task written before these rules or under a larger
//!    `?item_limit=`), the claim instead ends the task as `exhausted`, recording why
//!    (kind `unrecordable`, as `tasktrack run` records an outcome the store refuses): the
//!    claim is granted and failed at once, not retryable, by the core's rules
//!    ([`fit_claim`]). `claim_next` goes on with the next task; a claim by id answers
//!    [`Refusal::Exhausted`], as for a task whose last lease expired.

use crate::item::{self, Item};
use serde::Serialize;
use tasktrack_core::lifecycle::{self, ClaimDecision};
use tasktrack_core::{Claim, Error, Fail, Lease, Refusal, Result, Task, Timestamp};

/// DynamoDB's limit on one item: 400 KB, counting attribute names and values (AWS's KB are
/// 1,024 bytes). The default of `?item_limit=`.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// The smallest `?item_limit=` (a few reserves: below it hardly any task would fit).
pub const MIN_ITEM_BYTES: usize = 8 * 1024;

/// What a write that makes data or output larger must leave free of the item: room for a
/// lease (its owner may be 512 bytes), the last error and a history record.
pub const RESERVED_BYTES: usize = 2 * 1024;

/// A task ready to be written: as it will be stored (perhaps with failure records cut, see the
/// module docs), and its item.
#[derive(Debug, Clone)]
pub(crate) struct Fitted {
    /// The task as stored.
    pub task: Task,
    /// Its item.
    pub item: Item,
}

/// `task` (replacing `old`; `None` for an insert) made to fit an item of at most `limit` bytes
/// by the rules of the module docs, with its item; [`Error::InvalidInput`] if it cannot.
pub(crate) fn fit(limit: usize, old: Option<&Task>, mut task: Task) -> Result<Fitted> {
    let item = item::task_item(&task)?;
    let size = item::item_size(&item);
    let budget = budget(limit, old, &task, size);
    if size <= budget {
        return Ok(Fitted { task, item });
    }
    cut_failure_records(&mut task, size - budget);
    let item = item::task_item(&task)?;
    let size = item::item_size(&item);
    if size <= budget {
        return Ok(Fitted { task, item });
    }
    Err(too_large(&task, size, limit, budget))
}

/// What a claim writes (see [`fit_claim`]).
#[allow(clippy::large_enum_variant)] // short-lived, never stored
pub(crate) enum ClaimWrite {
    /// Not claimable; nothing to write.
    Refused(Refusal),
    /// Write this; the caller gets the lease if there is one. `None`: the claim exhausts the
    /// task instead (its last lease expired at its last attempt, or it cannot hold a lease).
    Write(Fitted, Option<Lease>),
    /// Nothing the claim could write fits, not even the task exhausted (only a task written
    /// under a larger `?item_limit=` can be that full): why. The task is left as it is.
    Unwritable(String),
}

/// The core's claim rule on `candidate`, fitted: a granted claim whose task cannot fit even
/// with its failure records cut is failed at once instead, not retryable, with kind
/// `unrecordable` and a message saying why (rule 3 of the module docs).
pub(crate) fn fit_claim(
    limit: usize,
    candidate: &Task,
    req: &Claim,
    now: Timestamp,
) -> Result<ClaimWrite> {
    let exhausted = |task| match fit(limit, Some(candidate), task) {
        Ok(fitted) => Ok(ClaimWrite::Write(fitted, None)),
        Err(Error::InvalidInput(why)) => Ok(ClaimWrite::Unwritable(why)),
        Err(e) => Err(e),
    };
    let granted = match lifecycle::claim(candidate, req, now)? {
        ClaimDecision::Refused(reason) => return Ok(ClaimWrite::Refused(reason)),
        ClaimDecision::Exhausted(task) => return exhausted(task),
        ClaimDecision::Granted(claimed) => claimed,
    };
    let why = match fit(limit, Some(candidate), granted.task.clone()) {
        Ok(fitted) => return Ok(ClaimWrite::Write(fitted, Some(granted.lease))),
        Err(Error::InvalidInput(why)) => why,
        Err(e) => return Err(e),
    };
    let unrecordable = Fail::unleasable(why);
    exhausted(lifecycle::fail(
        &granted.task,
        &granted.lease,
        &unrecordable,
        now,
    )?)
}

/// The most bytes the item of `new` may take: `limit`, less [`RESERVED_BYTES`] when the write
/// makes data or output larger (only measured when it matters).
fn budget(limit: usize, old: Option<&Task>, new: &Task, size: usize) -> usize {
    let roomy = limit.saturating_sub(RESERVED_BYTES);
    if size <= roomy {
        return limit;
    }
    let payload = |t: &Task| json_len(&t.data) + t.output.as_ref().map_or(0, json_len);
    if old.is_none_or(|old| payload(new) > payload(old)) {
        roomy
    } else {
        limit
    }
}

/// Cuts failure records of `task` (rule 2 of the module docs) until about `over` bytes are
/// saved, or nothing is left to cut. Sizes are those of the JSON record, which changes by
/// exactly the change of each JSON value; the caller measures the result again.
fn cut_failure_records(task: &mut Task, mut over: usize) {
    // 1. History details, oldest first.
    for record in &mut task.history {
        if over == 0 {
            return;
        }
        let Some(detail) = record.error.as_mut().and_then(|f| f.detail.as_mut()) else {
            continue;
        };
        let note = format!(
            "[{} bytes cut to keep the task within DynamoDB's item size limit]",
            detail.len()
        );
        let saved = json_len(detail.as_str()).saturating_sub(json_len(&note));
        if saved > 0 {
            *detail = note;
            over = over.saturating_sub(saved);
        }
    }
    // 2. The start of the last error's detail.
    if over > 0
        && let Some(detail) = task.error.as_mut().and_then(|f| f.detail.as_mut())
        && let Some((kept, saved)) = keep_end(detail, over)
    {
        *detail = kept;
        over = over.saturating_sub(saved);
    }
    // 3. The oldest history records.
    while over > 0 && !task.history.is_empty() {
        let separator = usize::from(task.history.len() > 1);
        over = over.saturating_sub(json_len(&task.history[0]) + separator);
        task.history.remove(0);
    }
}

/// `detail` without as much of its start as saves `over` bytes of JSON, after a note saying how
/// many bytes were cut; and the bytes saved (less than `over` if the note alone is too long).
/// `None`: the note is no shorter than the detail.
fn keep_end(detail: &str, over: usize) -> Option<(String, usize)> {
    let note = |cut: usize| {
        format!("[first {cut} bytes cut to keep the task within DynamoDB's item size limit]\n")
    };
    let before = json_len(detail);
    // The longest note (the most bytes cut), escaped and without its quotes.
    let note_len = json_len(&note(detail.len())) - 2;
    let room = before.saturating_sub(over + 2 + note_len);
    let mut start = detail.len();
    let mut taken = 0;
    for (i, c) in detail.char_indices().rev() {
        taken += escaped_len(c);
        if taken > room {
            break;
        }
        start = i;
    }
    let kept = note(start) + &detail[start..];
    let saved = before.checked_sub(json_len(&kept)).filter(|&n| n > 0)?;
    Some((kept, saved))
}

/// How many bytes `c` takes in a JSON string (serde_json's escapes).
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if c < ' ' => 6,
        c => c.len_utf8(),
    }
}

/// The length of `value` as compact JSON (what the `doc` attribute holds).
fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Our values always serialize; were one not to, the caller's measure of the item catches it.
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => 0,
    }
}

/// The refusal of a task that does not fit: names it, its size, the limit and what is large.
fn too_large(task: &Task, size: usize, limit: usize, budget: usize) -> Error {
    let free = if budget < limit {
        format!(
            ", less {RESERVED_BYTES} bytes kept free for the lease and failure records once its \
             data or output grows"
        )
    } else {
        String::new()
    };
    Error::InvalidInput(format!(
        "task {} would be a DynamoDB item of {size} bytes, over DynamoDB's limit of {limit} \
         bytes{} per item{free} (its JSON data is {} bytes, its output {} bytes): not written; \
         keep large results outside the task (a file, an object) and store a reference to them",
        task.key(),
        if limit == MAX_ITEM_BYTES {
            " (400 KB)"
        } else {
            ""
        },
        json_len(&task.data),
        task.output.as_ref().map_or(0, json_len),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::time::Duration;
    use tasktrack_core::{Failure, Job, JobName, NewTask, Status, TaskId};

    const LIMIT: usize = MAX_ITEM_BYTES;

    fn now() -> Timestamp {
        Timestamp::from_millis(1_000_000)
    }

    fn task(data_len: usize) -> Task {
        let job = Job::new(JobName::new("j").unwrap(), now());
        let new = NewTask::new(TaskId::new("a").unwrap())
            .with_data(Value::String("x".repeat(data_len)))
            .with_max_attempts(100);
        lifecycle::create_task(&job, &new, now()).unwrap()
    }

    fn size(task: &Task) -> usize {
        item::item_size(&item::task_item(task).unwrap())
    }

    /// The data length that makes a new task's item exactly `bytes`.
    fn data_for(bytes: usize) -> usize {
        bytes - size(&task(0))
    }

    fn claim(owner: &str) -> Claim {
        Claim::new(owner, Duration::from_secs(60))
    }

    /// `task` claimed by `w` (and the lease), unfitted.
    fn claimed(task: &Task, at: Timestamp) -> (Task, Lease) {
        match lifecycle::claim(task, &claim("w"), at).unwrap() {
            ClaimDecision::Granted(c) => (c.task, c.lease),
            other => panic!("not granted: {other:?}"),
        }
    }

    fn traceback(bytes: usize) -> String {
        let mut t = "Traceback (most recent call last):\n".to_owned();
        while t.len() < bytes {
            t.push_str("  File \"job.py\", line 7, in \"run\"\n");
        }
        t + "ValueError: the end"
    }

    #[test]
    fn a_new_task_fits_up_to_the_limit_less_the_reserve_and_not_a_byte_more() {
        let fits = task(data_for(LIMIT - RESERVED_BYTES));
        let fitted = fit(LIMIT, None, fits.clone()).unwrap();
        assert_eq!(item::item_size(&fitted.item), LIMIT - RESERVED_BYTES);
        assert_eq!(fitted.task, fits, "nothing cut");
        match fit(LIMIT, None, task(data_for(LIMIT - RESERVED_BYTES + 1))) {
            Err(Error::InvalidInput(m)) => {
                assert!(m.contains("task j/a"), "names the task: {m}");
                assert!(
                    m.contains(&format!("{} bytes", LIMIT - RESERVED_BYTES + 1)),
                    "its size: {m}"
                );
                assert!(m.contains("409600 bytes (400 KB)"), "the limit: {m}");
                assert!(m.contains("less 2048 bytes kept free"), "the reserve: {m}");
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
        // A smaller limit (`?item_limit=`) is named as such.
        let Err(Error::InvalidInput(m)) = fit(100_000, None, task(200_000)) else {
            panic!("fits in 100,000 bytes?");
        };
        assert!(m.contains("limit of 100000 bytes per item"), "{m}");
    }

    #[test]
    fn writes_that_do_not_grow_data_or_output_may_use_the_reserve() {
        let pending = task(data_for(LIMIT - RESERVED_BYTES));
        let (running, lease) = claimed(&pending, now());
        let fitted = fit(LIMIT, Some(&pending), running.clone()).unwrap();
        assert!(item::item_size(&fitted.item) > LIMIT - RESERVED_BYTES);
        assert_eq!(fitted.task, running, "the claim fits whole");
        // A patch that makes the data larger must leave the reserve; one that shrinks it need not.
        let grown = lifecycle::patch_data(&running, &lease, &Value::from("xy"), now()).unwrap();
        let mut larger = grown.clone();
        larger.data = Value::String("x".repeat(data_for(LIMIT - RESERVED_BYTES) + 1));
        assert!(matches!(
            fit(LIMIT, Some(&running), larger),
            Err(Error::InvalidInput(_))
        ));
        assert!(fit(LIMIT, Some(&running), grown).is_ok());
    }

    #[test]
    fn a_failure_too_large_keeps_the_end_of_its_traceback() {
        let (running, lease) = claimed(&task(300_000), now());
        let detail = traceback(200_000);
        let failure = Failure::new("error", "boom").with_detail(detail.clone());
        let failed = lifecycle::fail(&running, &lease, &Fail::new(failure), now()).unwrap();
        assert!(
            size(&failed) > LIMIT,
            "the traceback twice: {}",
            size(&failed)
        );

        let stored = fit(LIMIT, Some(&running), failed).unwrap();
        assert!(item::item_size(&stored.item) <= LIMIT);
        let task = stored.task;
        assert_eq!(task.status, Status::Failed, "recorded");
        let error = task.error.as_ref().unwrap();
        assert_eq!(
            (error.kind.as_str(), error.message.as_str()),
            ("error", "boom")
        );
        let kept = error.detail.as_deref().unwrap();
        assert!(kept.ends_with("ValueError: the end"), "the end is kept");
        assert!(kept.starts_with("[first "), "{}", &kept[..80]);
        assert!(kept.len() > 90_000, "as much as fits: {}", kept.len());
        let cut: usize = kept["[first ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(detail.ends_with(&kept[kept.find('\n').unwrap() + 1..]));
        assert_eq!(
            cut + kept.len() - kept.find('\n').unwrap() - 1,
            detail.len()
        );
        // The history's copy of it went first (the only record).
        let record = task.history.last().unwrap().error.as_ref().unwrap();
        assert_eq!(
            record.detail.as_deref(),
            Some(
                format!(
                    "[{} bytes cut to keep the task within DynamoDB's item size limit]",
                    detail.len()
                )
                .as_str()
            )
        );
        assert_eq!(record.message, "boom");
    }

    /// Claims `t` at `hour` and fails it with a traceback of `bytes` (ending in `hour`), fitted.
    fn fail_at(t: &Task, hour: u64, bytes: usize) -> Task {
        let at = now().plus(Duration::from_secs(3600 * hour));
        let (running, lease) = claimed(t, at);
        let failure = Failure::new("error", format!("boom {hour}"))
            .with_detail(traceback(bytes) + &hour.to_string());
        let failed = lifecycle::fail(&running, &lease, &Fail::new(failure), at).unwrap();
        let stored = fit(LIMIT, Some(&running), failed).unwrap();
        assert!(item::item_size(&stored.item) <= LIMIT);
        stored.task
    }

    #[test]
    fn the_oldest_tracebacks_are_cut_first() {
        let mut t = task(1_000);
        for hour in 0..3 {
            t = fail_at(&t, hour, 40_000);
        }
        assert!(
            t.history
                .iter()
                .all(|a| a.error.as_ref().unwrap().detail.as_ref().unwrap().len() > 40_000)
        );
        // The data grew meanwhile (say, a checkpoint): the fourth failure does not fit whole.
        t.data = Value::String("x".repeat(250_000));
        let t = fail_at(&t, 3, 40_000);

        // Every attempt recorded with its message; the last traceback whole (in `error`), the two
        // oldest cut in history, the newest kept.
        assert_eq!(t.history.len(), 4);
        let last = t.error.as_ref().unwrap().detail.as_deref().unwrap();
        assert_eq!(last, traceback(40_000) + "3");
        let whole: Vec<bool> = t
            .history
            .iter()
            .map(|a| {
                a.error
                    .as_ref()
                    .unwrap()
                    .detail
                    .as_deref()
                    .unwrap()
                    .starts_with("Traceback")
            })
            .collect();
        assert_eq!(whole, [false, false, true, true]);
        for (i, a) in t.history.iter().enumerate() {
            assert_eq!(a.error.as_ref().unwrap().message, format!("boom {i}"));
        }
    }

    #[test]
    fn lease_expiries_near_the_limit_drop_the_oldest_records() {
        let mut t = task(data_for(LIMIT - RESERVED_BYTES));
        for attempt in 0..30 {
            let at = now().plus(Duration::from_secs(3600 * attempt));
            let ClaimWrite::Write(fitted, lease) = fit_claim(LIMIT, &t, &claim("w"), at).unwrap()
            else {
                panic!("refused");
            };
            assert!(item::item_size(&fitted.item) <= LIMIT);
            assert!(lease.is_some(), "attempt {attempt}: claimed");
            t = fitted.task;
        }
        assert_eq!(t.attempts, 30);
        assert!(!t.history.is_empty() && t.history.len() < 20);
        assert!(
            t.history
                .iter()
                .all(|a| a.outcome == tasktrack_core::Outcome::LeaseExpired)
        );
        assert_eq!(t.history.last().unwrap().attempt, 29, "the newest kept");
    }

    #[test]
    fn a_task_that_cannot_hold_a_lease_is_exhausted_saying_why() {
        // Less room than the reserve (a task written under a larger `?item_limit=`), and a
        // 512-byte owner of `"`s: over 1 KB of JSON for the lease.
        let pending = task(data_for(LIMIT - 1_000));
        let owner = "\"".repeat(512);
        let ClaimWrite::Write(fitted, lease) =
            fit_claim(LIMIT, &pending, &claim(&owner), now()).unwrap()
        else {
            panic!("refused");
        };
        assert!(lease.is_none(), "not claimed");
        assert!(item::item_size(&fitted.item) <= LIMIT);
        let t = fitted.task;
        assert_eq!(
            (t.status, t.attempts, t.lease.is_none()),
            (Status::Exhausted, 1, true)
        );
        assert!(t.claimable_at().is_none(), "out of the claim index");
        let error = t.error.unwrap();
        assert_eq!(error.kind, "unrecordable");
        assert!(
            error
                .message
                .contains("cannot hold this task under a lease")
                && error.message.contains("409600 bytes"),
            "{}",
            error.message
        );
        assert_eq!(t.data, pending.data, "data untouched");

        // A task too full to record even that cannot be written at all: the caller skips it.
        let full = task(data_for(LIMIT - 100));
        assert!(matches!(
            fit_claim(LIMIT, &full, &claim("w"), now()),
            Ok(ClaimWrite::Unwritable(m)) if m.contains("409600 bytes")
        ));
    }

    #[test]
    fn a_cut_traceback_keeps_whole_characters_and_escapes() {
        let detail = "é\"\n\u{1}".repeat(1_000) + "end";
        let over = 1_000;
        let (kept, saved) = keep_end(&detail, over).unwrap();
        assert!(saved >= over, "{saved}");
        assert_eq!(saved, json_len(detail.as_str()) - json_len(kept.as_str()));
        assert!(saved < over + 10, "no more than needed: {saved}");
        assert!(kept.ends_with("end"));
        let cut: usize = kept["[first ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(&detail[cut..], &kept[kept.find(']').unwrap() + 2..]);
        // A detail no longer than the note stays.
        assert_eq!(keep_end("short", 3), None);
    }
}
