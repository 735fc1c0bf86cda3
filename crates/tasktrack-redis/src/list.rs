//! `list`: keyset pagination over per-status indexes.
//!
//! Each status of a job has a sorted set whose members are `<updated_at as 12 characters><id>`
//! ([`time12`]),
//! all at score 0, so Redis keeps them in exactly the order [`TaskQuery`] pages in
//! (`updated_at`, then `id`) and `ZRANGEBYLEX` starts right after a cursor, inside a time range,
//! without an offset. A query over several statuses merges their sets; the stage and id-prefix
//! filters are applied to the tasks read, so a very selective stage filter reads more.
//!
//! A task hash that does not decode (edited by hand) does not fail the page: it is named in
//! [`TaskPage::unreadable`] at the place its listing member gives (`updated_at` and id, which
//! the member holds apart from the hash), so it pages like any task. Its member already passed
//! the status, time, id-prefix and cursor filters; the stage filter is matched against the
//! hash's `stage` field as it reads. A member whose own place does not read (not 12 characters
//! as the scripts write them and a valid id, which only an edit of the listing set itself
//! gives) fails the page as `Corrupt`.

use crate::codec::Fields;
use crate::docs::RedisDocs;
use tasktrack_core::{
    Cursor, Error, Listed, Result, Status, TaskId, TaskPage, TaskQuery, Timestamp, UnreadableTask,
};

/// The digits of [`time12`] before 1970, in byte order.
const BASE32: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";

/// How far before 1970 [`time12`] places instants apart (2^46 ms, about 2230 years).
const BEFORE_1970: i64 = 1 << 46;

/// A member's time part, in the byte order of time (`time12` in `lua/common.lua`, which writes
/// the members): from 1970 on, 12 hex digits; before, `-` (which sorts before every digit) and
/// 11 base-32 digits of the milliseconds plus [`BEFORE_1970`].
fn time12(t: Timestamp) -> String {
    let ms = t.as_millis();
    if ms >= 0 {
        return format!("{:012x}", ms.min(0xffff_ffff_ffff));
    }
    let mut v = u64::try_from(ms.saturating_add(BEFORE_1970)).unwrap_or(0);
    let mut digits = [b'0'; 11];
    for d in digits.iter_mut().rev() {
        *d = BASE32[usize::try_from(v % 32).unwrap_or(0)];
        v /= 32;
    }
    let mut out = String::with_capacity(12);
    out.push('-');
    out.extend(digits.iter().map(|&d| char::from(d)));
    out
}

/// The instant a member's 12 characters of time name, if they are exactly what [`time12`]
/// writes for it (so that a cursor there is this very member again).
fn parse_time12(digits: &str) -> Option<Timestamp> {
    let ms = match digits.strip_prefix('-') {
        Some(b32) => i64::from_str_radix(b32, 32).ok()? - BEFORE_1970,
        None => i64::from_str_radix(digits, 16).ok()?,
    };
    let t = Timestamp::from_millis(ms);
    (time12(t) == digits).then_some(t)
}

/// A lex bound: (payload, inclusive). `None` is the open end.
type Bound = Option<(String, bool)>;

fn render(bound: &Bound, open_end: &str) -> String {
    match bound {
        None => open_end.to_string(),
        Some((p, true)) => format!("[{p}"),
        Some((p, false)) => format!("({p}"),
    }
}

/// The tighter of two bounds: the larger for a lower bound, the smaller for an upper one.
fn tighter(a: Bound, b: Bound, lower: bool) -> Bound {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => {
            let a_wins = if lower { a.0 >= b.0 } else { a.0 <= b.0 };
            Some(if a_wins { a } else { b })
        }
    }
}

/// One page of `query`'s tasks.
pub(crate) async fn list(docs: &RedisDocs, query: &TaskQuery) -> Result<TaskPage> {
    let statuses: Vec<Status> = if query.statuses.is_empty() {
        Status::ALL.to_vec()
    } else {
        query.statuses.clone()
    };
    let mut lower: Bound = query.updated_after.map(|t| (time12(t), true));
    let mut upper: Bound = query.updated_before.map(|t| (time12(t), false));
    if let Some(c) = &query.after {
        let at = Some((format!("{}{}", time12(c.updated_at), c.id), false));
        if query.newest_first {
            upper = tighter(upper, at, false);
        } else {
            lower = tighter(lower, at, true);
        }
    }
    let want = query.limit.saturating_add(1);
    let batch = want.clamp(64, 1000);
    let mut found: Vec<Listed> = Vec::new();
    loop {
        let mut pipe = redis::pipe();
        for s in &statuses {
            let key = docs.keys.by_status(&query.job, *s);
            if query.newest_first {
                pipe.cmd("ZREVRANGEBYLEX")
                    .arg(key)
                    .arg(render(&upper, "+"))
                    .arg(render(&lower, "-"));
            } else {
                pipe.cmd("ZRANGEBYLEX")
                    .arg(key)
                    .arg(render(&lower, "-"))
                    .arg(render(&upper, "+"));
            }
            pipe.arg("LIMIT").arg(0).arg(batch);
        }
        let per_status: Vec<Vec<String>> = pipe
            .query_async(&mut docs.conn.clone())
            .await
            .map_err(|e| docs.err(e))?;
        // A set that filled its batch may hold more members before the others' later ones: only
        // members up to the earliest such cut are known to be complete.
        let cut = per_status
            .iter()
            .filter(|m| m.len() >= batch)
            .filter_map(|m| m.last().cloned())
            .reduce(|a, b| if (a <= b) != query.newest_first { a } else { b });
        let done = cut.is_none();
        let mut members: Vec<String> = per_status
            .into_iter()
            .flatten()
            .filter(|m| {
                cut.as_ref()
                    .is_none_or(|c| if query.newest_first { m >= c } else { m <= c })
            })
            .collect();
        members.sort();
        if query.newest_first {
            members.reverse();
        }
        members.dedup();
        let entries: Vec<(&str, &str)> = members
            .iter()
            .filter_map(|m| Some((m.as_str(), m.get(12..)?)))
            .filter(|(_, id)| {
                query
                    .id_prefix
                    .as_ref()
                    .is_none_or(|p| id.starts_with(p.as_str()))
            })
            .collect();
        let ids: Vec<&str> = entries.iter().map(|(_, id)| *id).collect();
        let hashes = docs.read_hashes(&query.job, &ids).await?;
        for ((member, id), fields) in entries.into_iter().zip(hashes) {
            if let Some(entry) = listed(docs, query, member, id, &fields)? {
                found.push(entry);
            }
        }
        if found.len() >= want || done {
            break;
        }
        match members.last() {
            Some(last) if query.newest_first => upper = Some((last.clone(), false)),
            Some(last) => lower = Some((last.clone(), false)),
            None => break,
        }
    }
    // A task written while we read may carry a newer updated_at than its index entry had.
    found.sort_by(|a, b| a.place().cmp(&b.place()));
    if query.newest_first {
        found.reverse();
    }
    found.dedup_by(|a, b| a.place().1 == b.place().1);
    Ok(TaskPage::from_listed(found, query.limit))
}

/// The entry of listing member `member` (task `id`, hash `fields`) if it belongs on the page:
/// its task when the hash decodes and passes the filters, or, when the hash does not decode,
/// the record named at the member's place. `None` for a task deleted meanwhile or filtered out.
fn listed(
    docs: &RedisDocs,
    query: &TaskQuery,
    member: &str,
    id: &str,
    fields: &Fields,
) -> Result<Option<Listed>> {
    if fields.is_empty() {
        return Ok(None);
    }
    let error = match docs.decode(&query.job, id, fields) {
        Ok(task) if query.matches(&task) && query.is_after_cursor(&task) => {
            return Ok(Some(Listed::Task(task)));
        }
        Ok(_) => return Ok(None),
        Err(error @ Error::Corrupt { .. }) => error,
        Err(other) => return Err(other),
    };
    let stage_matches = query
        .stage
        .as_ref()
        .is_none_or(|s| fields.get("stage") == Some(s));
    if !stage_matches {
        return Ok(None);
    }
    let Some(at) = member_place(member, id) else {
        return Err(error);
    };
    let unreadable = UnreadableTask::new(at.id.clone(), &error);
    Ok(Some(Listed::Unreadable(at, unreadable)))
}

/// The place in the listing order a member names: its 12 characters of `updated_at` and its
/// id; `None` when either does not read. The characters must be exactly what [`time12`] writes
/// (lower case, no sign but its own), so that a cursor at this place is this very member again
/// and the next page starts right after it.
fn member_place(member: &str, id: &str) -> Option<Cursor> {
    let updated_at = parse_time12(member.get(..12)?)?;
    Some(Cursor {
        updated_at,
        id: TaskId::new(id).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time12_sorts_like_time_and_reads_back() {
        let instants = [
            -BEFORE_1970,
            -62_167_219_200_000, // 0000-01-01, the earliest instant a lease writes
            -86_400_000,
            -20,
            -1,
            0,
            1,
            Timestamp::MAX.as_millis(),
        ];
        let texts: Vec<String> = instants
            .iter()
            .map(|&ms| time12(Timestamp::from_millis(ms)))
            .collect();
        for (ms, text) in instants.iter().zip(&texts) {
            assert_eq!(text.len(), 12, "{text}");
            assert_eq!(parse_time12(text), Some(Timestamp::from_millis(*ms)));
        }
        assert!(texts.windows(2).all(|w| w[0] < w[1]), "{texts:?}");
        assert_eq!(time12(Timestamp::from_millis(-1)), "-01vvvvvvvvv");
        assert_eq!(time12(Timestamp::from_millis(10_000)), "000000002710");
        // Only what time12 writes reads: not a sign, upper case, a digit past base 32, nor
        // base-32 digits that name an instant after 1970.
        for other in [
            "+00000002710",
            "-01VVVVVVVVV",
            "-0000000000w",
            "-20000000000",
        ] {
            assert_eq!(parse_time12(other), None, "{other}");
        }
    }
}
