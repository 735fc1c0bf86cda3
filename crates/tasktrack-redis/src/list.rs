//! `list`: keyset pagination over per-status indexes.
//!
//! Each status of a job has a sorted set whose members are `<updated_at as 12 hex digits><id>`,
//! all at score 0, so Redis keeps them in exactly the order [`TaskQuery`] pages in
//! (`updated_at`, then `id`) and `ZRANGEBYLEX` starts right after a cursor, inside a time range,
//! without an offset. A query over several statuses merges their sets; the stage and id-prefix
//! filters are applied to the tasks read, so a very selective stage filter reads more.

use crate::docs::RedisDocs;
use tasktrack_core::{Result, Status, Task, TaskPage, TaskQuery, Timestamp};

/// The listing member's time part (same encoding as `hex12` in `lua/common.lua`).
fn hex12(t: Timestamp) -> String {
    format!("{:012x}", t.as_millis().clamp(0, 0xffff_ffff_ffff))
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
    let mut lower: Bound = query.updated_after.map(|t| (hex12(t), true));
    let mut upper: Bound = query.updated_before.map(|t| (hex12(t), false));
    if let Some(c) = &query.after {
        let at = Some((format!("{}{}", hex12(c.updated_at), c.id), false));
        if query.newest_first {
            upper = tighter(upper, at, false);
        } else {
            lower = tighter(lower, at, true);
        }
    }
    let want = query.limit.saturating_add(1);
    let batch = want.clamp(64, 1000);
    let mut found: Vec<Task> = Vec::new();
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
        let ids: Vec<String> = members
            .iter()
            .filter_map(|m| m.get(12..))
            .filter(|id| {
                query
                    .id_prefix
                    .as_ref()
                    .is_none_or(|p| id.starts_with(p.as_str()))
            })
            .map(str::to_string)
            .collect();
        for task in docs.load_many(&query.job, &ids).await? {
            if query.matches(&task) && query.is_after_cursor(&task) {
                found.push(task);
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
    found.sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id)));
    if query.newest_first {
        found.reverse();
    }
    found.dedup_by(|a, b| a.id == b.id);
    Ok(TaskPage::from_sorted(found, query.limit))
}
