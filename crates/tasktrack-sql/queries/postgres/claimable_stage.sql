SELECT * FROM {t}task
WHERE job = $1 AND stage = $2 AND claim_at IS NOT NULL AND claim_at <= $3
ORDER BY priority DESC, claim_at, id
LIMIT $4
