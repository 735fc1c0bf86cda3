//! Conformance cases: listing with filters and keyset pagination.

use super::*;
use serde_json::json;

/// Lists filter by status set, stage, id prefix and update-time range.
pub async fn list_filters_by_status_stage_prefix_and_time(h: Harness) -> Result<()> {
    h.add(&["img-1", "img-2", "doc-1"]).await?;
    h.advance(Duration::from_secs(10));
    let t1 = h.now();
    let c = h.claim("img-2", "w").await?;
    h.store.succeed(&c.lease, json!(1), h.now()).await?;
    h.advance(Duration::from_secs(10));
    let c = h.claim("doc-1", "w").await?;
    h.fail_now(&c.lease, "x").await?;
    let q = TaskQuery::new(h.job.clone());
    assert_eq!(
        ids(&h
            .store
            .list(&q.clone().with_statuses([Status::Succeeded, Status::Failed]))
            .await?),
        ["img-2", "doc-1"]
    );
    assert_eq!(
        ids(&h
            .store
            .list(&TaskQuery {
                id_prefix: Some("img-".into()),
                ..q.clone()
            })
            .await?),
        ["img-1", "img-2"]
    );
    let range = TaskQuery {
        updated_after: Some(t1),
        updated_before: Some(t1.plus(Duration::from_secs(1))),
        ..q.clone()
    };
    assert_eq!(ids(&h.store.list(&range).await?), ["img-2"]);
    assert!(
        h.store
            .list(&TaskQuery {
                stage: Some("nope".into()),
                ..q
            })
            .await?
            .tasks
            .is_empty()
    );
    Ok(())
}

/// Pages follow `updated_at` then id, oldest first (or newest first), and the cursor continues
/// exactly where the last page ended.
pub async fn list_pages_with_a_stable_cursor_in_both_orders(h: Harness) -> Result<()> {
    let all: Vec<String> = (0..7).map(|i| format!("t{i}")).collect();
    for id in &all {
        h.add(&[id.as_str()]).await?;
        h.advance(Duration::from_millis(1));
    }
    h.add(&["t7", "t8"]).await?; // same updated_at: ordered by id
    let mut expected: Vec<String> = all.clone();
    expected.extend(["t7".to_string(), "t8".to_string()]);
    for newest_first in [false, true] {
        let mut q = TaskQuery {
            newest_first,
            ..TaskQuery::new(h.job.clone()).with_limit(4)
        };
        let mut seen = Vec::new();
        loop {
            let page = h.store.list(&q).await?;
            assert!(page.tasks.len() <= 4);
            seen.extend(ids(&page).into_iter().map(String::from));
            match page.next {
                Some(next) => q.after = Some(next),
                None => break,
            }
        }
        let mut want = expected.clone();
        if newest_first {
            want.reverse();
        }
        assert_eq!(seen, want, "newest_first = {newest_first}");
    }
    Ok(())
}

/// A page size of zero or above the maximum is rejected.
pub async fn list_with_bad_limit_is_rejected(h: Harness) -> Result<()> {
    for limit in [0, MAX_LIMIT + 1] {
        let result = h
            .store
            .list(&TaskQuery::new(h.job.clone()).with_limit(limit))
            .await;
        assert!(
            matches!(result, Err(Error::InvalidInput(_))),
            "limit {limit}: {result:?}"
        );
    }
    Ok(())
}

/// Every page of `q`, followed by its cursor to the end, as one list of ids.
async fn all_pages(h: &Harness, mut q: TaskQuery) -> Result<Vec<String>> {
    let mut seen = Vec::new();
    loop {
        let page = h.store.list(&q).await?;
        assert!(
            page.tasks.len() <= q.limit,
            "a page holds at most its limit"
        );
        seen.extend(ids(&page).into_iter().map(String::from));
        match page.next {
            Some(next) => q.after = Some(next),
            None => return Ok(seen),
        }
        assert!(seen.len() <= 1_000, "the cursor does not advance: {seen:?}");
    }
}

/// Lists follow each task's last update, not its creation: a task written later moves to the
/// end (oldest first) or the front (newest first). Tasks updated at the same instant follow
/// their ids in byte order (upper case before lower case, punctuation by its code, non-ASCII
/// last), the same on every backend, and pages cut through such a tie continue exactly.
pub async fn list_follows_the_last_update_and_breaks_ties_by_id_bytes(h: Harness) -> Result<()> {
    for id in ["t0", "t1", "t2", "t3"] {
        h.add(&[id]).await?;
        h.advance(Duration::from_millis(1));
    }
    h.advance(Duration::from_secs(1));
    h.claim("t1", "w").await?;
    h.advance(Duration::from_millis(1));
    h.store
        .ignore(&h.key("t0"), &Ignore::default(), h.now())
        .await?;
    h.advance(Duration::from_millis(1));
    let mut ties = vec![
        "b", "B", "a_b", "a-b", "a b", "A", "a", "\u{e9}", "Z", "~", "a.b", "ab",
    ];
    h.add(&ties).await?;
    ties.sort_unstable();
    let mut expected: Vec<String> = ["t2", "t3", "t1", "t0"].map(String::from).to_vec();
    expected.extend(ties.iter().map(|s| s.to_string()));
    for newest_first in [false, true] {
        let mut want = expected.clone();
        if newest_first {
            want.reverse();
        }
        for limit in [1, 3, 100] {
            let q = TaskQuery {
                newest_first,
                ..TaskQuery::new(h.job.clone()).with_limit(limit)
            };
            assert_eq!(
                all_pages(&h, q).await?,
                want,
                "newest_first = {newest_first}, limit {limit}"
            );
        }
    }
    Ok(())
}

/// An id prefix is matched literally (`_`, `%`, `*`, `.`, `\` and case are not patterns); the
/// update-time range includes its start and excludes its end; filters hold on every page a
/// cursor leads to.
pub async fn list_prefix_is_literal_and_time_ranges_are_half_open(h: Harness) -> Result<()> {
    let ids = [
        "a_1", "ab1", "a%2", "a%b", "a\\c", "ac", "A_1", "a.1", "a*", "a[1]", "ax1",
    ];
    h.add(&ids).await?;
    let q = TaskQuery::new(h.job.clone());
    let sorted = |mut v: Vec<String>| {
        v.sort_unstable();
        v
    };
    for (prefix, want) in [
        ("a_", vec!["a_1"]),
        ("a%", vec!["a%2", "a%b"]),
        ("a\\", vec!["a\\c"]),
        ("a.", vec!["a.1"]),
        ("a*", vec!["a*"]),
        ("a[", vec!["a[1]"]),
        ("A", vec!["A_1"]),
        ("a_1", vec!["a_1"]),
        ("a_10", vec![]),
    ] {
        let found = all_pages(
            &h,
            TaskQuery {
                id_prefix: Some(prefix.into()),
                ..q.clone()
            },
        )
        .await?;
        assert_eq!(sorted(found), want, "prefix {prefix:?}");
    }

    h.advance(Duration::from_secs(10));
    let t1 = h.now();
    h.claim("ab1", "w").await?;
    h.advance(Duration::from_secs(10));
    let t2 = h.now();
    h.claim("ac", "w").await?;
    h.claim("ax1", "w").await?;
    let range = |after: Option<Timestamp>, before: Option<Timestamp>| TaskQuery {
        updated_after: after,
        updated_before: before,
        ..q.clone()
    };
    assert_eq!(all_pages(&h, range(Some(t1), Some(t2))).await?, ["ab1"]);
    assert_eq!(all_pages(&h, range(Some(t2), None)).await?, ["ac", "ax1"]);
    assert_eq!(
        all_pages(&h, range(None, Some(t1))).await?.len(),
        ids.len() - 3
    );

    let running = TaskQuery {
        id_prefix: Some("a".into()),
        ..q.clone().with_statuses([Status::InProgress]).with_limit(1)
    };
    assert_eq!(all_pages(&h, running).await?, ["ab1", "ac", "ax1"]);
    let pending_a = TaskQuery {
        id_prefix: Some("a".into()),
        newest_first: true,
        ..q.clone().with_statuses([Status::Pending]).with_limit(2)
    };
    let mut want: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| id.starts_with('a') && !["ab1", "ac", "ax1"].contains(id))
        .collect();
    want.sort_unstable();
    want.reverse();
    assert_eq!(all_pages(&h, pending_a).await?, want);
    Ok(())
}
