-- O(statuses × shards): the counter table, never the tasks.
SELECT stage_key, status, sum(n)::bigint AS n FROM {t}task_count
WHERE job = $1 GROUP BY stage_key, status HAVING sum(n) <> 0
