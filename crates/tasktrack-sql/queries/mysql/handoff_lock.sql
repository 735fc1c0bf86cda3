-- succeed_and_claim_next, step 1 of one short transaction: lock the presented lease's row (by
-- primary key) and, in the same statement, the first claimable rows of the job in claim order
-- exactly as claim_lock.sql does (SKIP LOCKED; a range scan of {t}task_claim; `neg_priority` is
-- -priority, see there). The second part
-- may return the lease's own row again (if its lease expired); the caller leaves that copy out.
-- It is not excluded here: `AND id <> ?` made MariaDB 10.11 scan the job's primary-key range and
-- filesort it (EXPLAIN: `key: PRIMARY, rows: 49593, Using filesort`) instead of the claim index's
-- first rows. Step 2 applies
-- lifecycle::succeed to the lease's row and lifecycle::claim to the others in Rust; step 3 writes
-- them back in one statement (same transaction). Pinned by
-- succeed_and_claim_next_completes_then_claims and
-- succeed_and_claim_next_with_a_stale_lease_claims_nothing. A hand-off that claims at a stage runs
-- the same statement with its `/*stage: … */` filter uncommented (`at_stage`; the stage bound
-- after the second job).
(SELECT * FROM {t}task WHERE job = ? AND id = ? FOR UPDATE)
UNION ALL
(SELECT * FROM {t}task
    WHERE job = ? AND claimable = 1 /*stage: AND stage = ? */ AND claim_at <= ?
    ORDER BY neg_priority, claim_at, id
    LIMIT ?
    FOR UPDATE SKIP LOCKED)
