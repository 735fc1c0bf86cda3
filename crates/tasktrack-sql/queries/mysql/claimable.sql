-- Candidates in claim order (Task::claimable_at): a range scan of {t}task_claim.
SELECT * FROM {t}task
WHERE job = ? AND claimable = 1 AND claim_at <= ?
ORDER BY priority DESC, claim_at, id
LIMIT ?
