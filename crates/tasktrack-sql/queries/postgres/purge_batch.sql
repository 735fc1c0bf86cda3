-- One batch of a purge: finished tasks only (statuses are checked terminal before this runs, so
-- no live lease is ever touched), at most $4 rows per statement so locks stay short; rows another
-- transaction holds (a `retry` rewriting one, say) are skipped: left out of this purge and its
-- count, for the next purge to take if they are still finished and old enough.
DELETE FROM {t}task WHERE (job, id) IN (
    SELECT job, id FROM {t}task
    WHERE job = $1 AND status = ANY($2) AND updated_at < $3
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
