//! Conformance cases: listing with filters and keyset pagination.

use super::*;
use serde_json::json;

fn ids(page: &TaskPage) -> Vec<&str> {
    page.tasks.iter().map(|t| t.id.as_str()).collect()
}

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
            seen.extend(page.tasks.iter().map(|t| t.id.to_string()));
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
