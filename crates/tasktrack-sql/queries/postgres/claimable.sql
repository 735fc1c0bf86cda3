-- Candidates in claim order (Task::claimable_at): a range scan of the partial claim index.
SELECT * FROM {t}task
WHERE job = $1 AND claim_at IS NOT NULL AND claim_at <= $2
ORDER BY priority DESC, claim_at, id
LIMIT $3
