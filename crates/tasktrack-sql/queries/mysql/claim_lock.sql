-- claim_next, step 1 of one short transaction: lock the first claimable rows of one priority in
-- claim order (a range scan of {t}task_claim that stops at the first row not due). SKIP LOCKED: concurrent workers take disjoint rows and never
-- wait for each other. Step 2 applies lifecycle::claim to each row in Rust and writes them back
-- with write_back (same transaction). A claim at a stage runs the same statement with its
-- `/*stage: … */` filter uncommented (`at_stage`; the stage bound after the job).
-- Claim order is priority descending, then claim_at, then id: `neg_priority` is -priority
-- (migration 3), so every part of the order and of the index is ascending, which MariaDB 10.6
-- and 10.7 (no descending indexes) read off the index as newer servers do.
-- One priority at a time (its `neg_priority` found by next_priority.sql): within it the index
-- is in claim_at order, so `claim_at <= ?` bounds the range. One ordered scan across priorities
-- would step over every row waiting for a not_before, a backoff or a lease's expiry before it
-- reached the next priority (an idle claim over 100,000 waiting rows took 162-166 ms).
SELECT * FROM {t}task
WHERE job = ? AND claimable = 1 /*stage: AND stage = ? */ AND neg_priority = ? AND claim_at <= ?
ORDER BY claim_at, id
LIMIT ?
FOR UPDATE SKIP LOCKED
