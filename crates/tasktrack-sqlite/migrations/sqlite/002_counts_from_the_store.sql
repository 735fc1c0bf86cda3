-- tasktrack SQLite schema, version 2: status changes move the counters from the store.
--
-- Version 1 kept tasktrack_count by an AFTER UPDATE trigger: two counter statements per row
-- changed, and a statement journal for every task UPDATE (a statement with a trigger may abort
-- half-way). The store now sums the moves of one operation (a claim of 32 tasks moves 32 from
-- pending to in_progress) and writes each (job, stage, status) delta once, in the same
-- transaction as the task rows (src/rows.rs, CountMoves). Inserts and deletes keep their
-- triggers: bulk deletes (purge, delete_job) are plain SQL.
DROP TRIGGER tasktrack_task_count_update;
