-- claimable.sql at one stage: a range scan of {t}task_claim_stage.
SELECT * FROM {t}task
WHERE job = ? AND claimable = 1 AND stage = ? AND claim_at <= ?
ORDER BY neg_priority, claim_at, id
LIMIT ?
