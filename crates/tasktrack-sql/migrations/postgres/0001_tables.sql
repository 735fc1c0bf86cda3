-- tasktrack schema, version 1 (PostgreSQL). `{t}` is the schema-qualified table prefix, `{p}` the
-- bare prefix (index names live in the table's schema).
--
-- Times are BIGINT milliseconds since the Unix epoch, always written by the client (`now` is a
-- request parameter; the server's clock is never read). Names use COLLATE "C" so that ORDER BY
-- matches the byte order every other backend uses for ids and cursors.

CREATE TABLE IF NOT EXISTS {t}job (
    name        text COLLATE "C" PRIMARY KEY,
    state       text NOT NULL,
    version     bigint NOT NULL,
    doc         jsonb NOT NULL
);
-- jobs(state) is an index range, not a scan.
CREATE INDEX IF NOT EXISTS {p}job_state ON {t}job (state, name);

CREATE TABLE IF NOT EXISTS {t}task (
    job                 text COLLATE "C" NOT NULL,
    id                  text COLLATE "C" NOT NULL,
    status              smallint NOT NULL,
    stage               text COLLATE "C",
    stages              jsonb NOT NULL,
    attempts            bigint NOT NULL,
    max_attempts        bigint NOT NULL,
    priority            integer NOT NULL,
    not_before          bigint,
    claim_at            bigint,
    lease_owner         text,
    lease_token         bigint,
    lease_acquired_at   bigint,
    lease_expires_at    bigint,
    token               bigint NOT NULL,
    version             bigint NOT NULL,
    data                jsonb NOT NULL,
    output              jsonb,
    error_kind          text,
    error_message       text,
    error_detail        text,
    history             jsonb NOT NULL,
    created_at          bigint NOT NULL,
    updated_at          bigint NOT NULL,
    started_at          bigint,
    finished_at         bigint,
    PRIMARY KEY (job, id)
);

-- The claim index: only claimable rows (claim_at is NULL once a task is finished), in claim
-- order. A claim is a range scan of this index; finished tasks are not in it at all.
CREATE INDEX IF NOT EXISTS {p}task_claim ON {t}task (job, priority DESC, claim_at, id)
    WHERE claim_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS {p}task_claim_stage ON {t}task (job, stage, priority DESC, claim_at, id)
    WHERE claim_at IS NOT NULL AND stage IS NOT NULL;
-- Listing (keyset pagination by updated_at, id) and purge (by status and age).
CREATE INDEX IF NOT EXISTS {p}task_updated ON {t}task (job, updated_at, id);
CREATE INDEX IF NOT EXISTS {p}task_status_updated ON {t}task (job, status, updated_at);

-- Counts per (job, stage, status), kept by the triggers below in the same transaction as every
-- write, so counts() reads O(statuses × shards) rows and never scans tasks. Each writing
-- connection adds to its own shard (backend pid mod 64) so that workers do not queue on one
-- counter row; a shard may go negative, the sum is exact.
CREATE TABLE IF NOT EXISTS {t}task_count (
    job         text COLLATE "C" NOT NULL,
    stage_key   text COLLATE "C" NOT NULL,
    status      smallint NOT NULL,
    shard       integer NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (job, stage_key, status, shard)
);

-- One statement-level trigger per event: transition tables give every changed row at once, and
-- the grouped, ordered upsert takes the counter locks in one global order (no deadlocks).
CREATE OR REPLACE FUNCTION {t}count_tasks() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {t}task_count AS c (job, stage_key, status, shard, n)
        SELECT job, CASE WHEN stage IS NULL THEN '' ELSE 's' || stage END, status, pg_backend_pid() % 64, count(*)
        FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (job, stage_key, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {t}task_count AS c (job, stage_key, status, shard, n)
        SELECT job, CASE WHEN stage IS NULL THEN '' ELSE 's' || stage END, status, pg_backend_pid() % 64, -count(*)
        FROM old_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (job, stage_key, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE
        INSERT INTO {t}task_count AS c (job, stage_key, status, shard, n)
        SELECT job, stage_key, status, pg_backend_pid() % 64, sum(d)
        FROM (
            SELECT job, CASE WHEN stage IS NULL THEN '' ELSE 's' || stage END AS stage_key, status, -1 AS d FROM old_rows
            UNION ALL
            SELECT job, CASE WHEN stage IS NULL THEN '' ELSE 's' || stage END, status, 1 FROM new_rows
        ) moved
        GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (job, stage_key, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$fn$;

DROP TRIGGER IF EXISTS {p}count_insert ON {t}task;
CREATE TRIGGER {p}count_insert AFTER INSERT ON {t}task
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {t}count_tasks();
DROP TRIGGER IF EXISTS {p}count_update ON {t}task;
CREATE TRIGGER {p}count_update AFTER UPDATE ON {t}task
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {t}count_tasks();
DROP TRIGGER IF EXISTS {p}count_delete ON {t}task;
CREATE TRIGGER {p}count_delete AFTER DELETE ON {t}task
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {t}count_tasks();

-- The documented analytics view (docs/backends/postgres.md): stable columns, real timestamps.
CREATE OR REPLACE VIEW {t}tasks AS
SELECT
    job,
    id,
    CASE status WHEN 0 THEN 'pending' WHEN 10 THEN 'in_progress' WHEN 20 THEN 'failed'
        WHEN 30 THEN 'exhausted' WHEN 40 THEN 'succeeded' WHEN 50 THEN 'ignored' END AS status,
    stage,
    attempts,
    error_kind,
    error_message,
    to_timestamp(created_at / 1000.0) AS created_at,
    to_timestamp(updated_at / 1000.0) AS updated_at,
    to_timestamp(finished_at / 1000.0) AS finished_at,
    CASE WHEN finished_at IS NOT NULL AND started_at IS NOT NULL
        THEN (finished_at - started_at) / 1000.0 END AS duration,
    lease_owner,
    to_timestamp(lease_expires_at / 1000.0) AS lease_expires_at,
    priority,
    data,
    output
FROM {t}task;
