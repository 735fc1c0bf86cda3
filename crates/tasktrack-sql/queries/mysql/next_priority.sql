-- claim_next's walk: the highest priority (lowest `neg_priority`) among the job's claimable rows
-- below the one already read (`neg_priority > ?`), due or not: one seek of {t}task_claim (no
-- lock). NULL when there is none.
SELECT MIN(neg_priority) FROM {t}task
WHERE job = ? AND claimable = 1 /*stage: AND stage = ? */ AND neg_priority > ?
