-- Candidates in claim order (Task::claimable_at): a range scan of {t}task_claim. `neg_priority`
-- is -priority (migration 3): highest priority first, with the index ascending.
SELECT * FROM {t}task
WHERE job = ? AND claimable = 1 AND claim_at <= ?
ORDER BY neg_priority, claim_at, id
LIMIT ?
