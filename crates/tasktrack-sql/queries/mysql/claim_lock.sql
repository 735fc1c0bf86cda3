-- claim_next, step 1 of one short transaction: lock the first claimable rows in claim order (a
-- range scan of {t}task_claim). SKIP LOCKED: concurrent workers take disjoint rows and never
-- wait for each other. Step 2 applies lifecycle::claim to each row in Rust and writes them back
-- with write_back (same transaction). A claim at a stage runs the same statement with its
-- `/*stage: … */` filter uncommented (`at_stage`; the stage bound after the job).
SELECT * FROM {t}task
WHERE job = ? AND claimable = 1 /*stage: AND stage = ? */ AND claim_at <= ?
ORDER BY priority DESC, claim_at, id
LIMIT ?
FOR UPDATE SKIP LOCKED
