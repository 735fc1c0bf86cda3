SELECT * FROM {t}task
WHERE job = ? AND claimable = 1 AND stage = ? AND claim_at <= ?
ORDER BY priority DESC, claim_at, id
LIMIT ?
FOR UPDATE SKIP LOCKED
