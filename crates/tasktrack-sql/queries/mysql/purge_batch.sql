-- One batch of a purge: finished tasks only (statuses are checked terminal before this runs, so
-- no live lease is ever touched), at most ? rows per statement so locks stay short.
DELETE FROM {t}task WHERE job = ? AND status IN ({statuses}) AND updated_at < ? LIMIT ?
