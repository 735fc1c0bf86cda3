-- claim_next, step 1 of one short transaction: lock the first claimable rows in claim order (a
-- range scan of {t}task_claim). SKIP LOCKED: concurrent workers take disjoint rows and never
-- wait for each other. Step 2 applies lifecycle::claim to each row in Rust and writes them back
-- with write_back (same transaction).
SELECT * FROM {t}task
WHERE job = ? AND claimable = 1 AND claim_at <= ?
ORDER BY priority DESC, claim_at, id
LIMIT ?
FOR UPDATE SKIP LOCKED
