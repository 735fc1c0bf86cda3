-- handoff_lock.sql for a claim at a stage (as claim_lock_stage.sql restricts claim_lock.sql).
(SELECT * FROM {t}task WHERE job = ? AND id = ? FOR UPDATE)
UNION ALL
(SELECT * FROM {t}task
    WHERE job = ? AND claimable = 1 AND stage = ? AND claim_at <= ?
    ORDER BY priority DESC, claim_at, id
    LIMIT ?
    FOR UPDATE SKIP LOCKED)
