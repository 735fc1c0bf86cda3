-- claim_next, past the first priorities it sought one by one (claim_lock.sql): the claimable
-- rows of every lower priority (`neg_priority > ?`) in claim order, one ordered range scan of
-- {t}task_claim, locked as in claim_lock.sql. Used so that a job of many distinct priorities
-- costs one scan, not one transaction per priority.
SELECT * FROM {t}task
WHERE job = ? AND claimable = 1 /*stage: AND stage = ? */ AND neg_priority > ? AND claim_at <= ?
ORDER BY neg_priority, claim_at, id
LIMIT ?
FOR UPDATE SKIP LOCKED
