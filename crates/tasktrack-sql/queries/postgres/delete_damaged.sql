-- Deletes a row that get_task found damaged (it does not decode), whatever its version, lease or
-- claim column (set aside or not): a damaged row has no version to compare and no lease anyone
-- can honour. The count trigger reads only job, stage and status, which hold apart from the
-- damaged JSON, so the counts lose the row as after any delete. Pinned by
-- a_damaged_task_can_be_deleted.
DELETE FROM {t}task WHERE job = $1 AND id = $2
