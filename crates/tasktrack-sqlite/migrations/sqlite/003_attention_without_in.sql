-- tasktrack SQLite schema, version 3: the attention index's condition without `IN`.
--
-- SQLite evaluates a partial index's WHERE for the old and the new row of every UPDATE of the
-- table. With three constants, `status IN ('failed', 'exhausted', 'ignored')` was coded as a
-- temporary B-tree, built and dropped at each evaluation, so twice per task written (about 4% of
-- the writer's time in a 16-worker drain, perf); the same condition as equalities joined by OR
-- is plain comparisons. Queries repeat the new condition word for word (src/queries.rs), which
-- is how SQLite recognises that a partial index applies. Rebuilding the index reads every task
-- once, during this migration.
DROP INDEX tasktrack_task_attention;
CREATE INDEX tasktrack_task_attention ON tasktrack_task (job, status, updated_at, id)
    WHERE status = 'failed' OR status = 'exhausted' OR status = 'ignored';
