-- O(statuses × shards): the counter table, never the tasks.
SELECT stage_key, status, CAST(SUM(n) AS SIGNED) AS n FROM {t}task_count
WHERE job = ? GROUP BY stage_key, status HAVING SUM(n) <> 0
