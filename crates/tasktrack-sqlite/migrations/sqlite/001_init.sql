-- tasktrack SQLite schema, version 1.
--
-- Times are INTEGER milliseconds since the Unix epoch (UTC); the `tasktrack_tasks` view shows
-- them as RFC 3339 text. JSON columns hold serde_json text. Status names and codes are the stable
-- ones of tasktrack_core::Status (pending 0, in_progress 10, failed 20, exhausted 30,
-- succeeded 40, ignored 50).

CREATE TABLE tasktrack_job (
    name         TEXT    NOT NULL PRIMARY KEY,
    state        TEXT    NOT NULL,            -- JobState, snake_case
    metadata     TEXT    NOT NULL,            -- JSON
    amount       INTEGER,                     -- expected number of tasks, NULL: unknown
    max_attempts INTEGER NOT NULL,
    lease_ms     INTEGER NOT NULL,
    backoff      TEXT    NOT NULL,            -- JSON {initial_ms, max_ms, jitter}
    stages       TEXT    NOT NULL,            -- JSON array of stage names
    version      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
-- jobs(state) is a query, not a scan.
CREATE INDEX tasktrack_job_state ON tasktrack_job (state, name);

CREATE TABLE tasktrack_task (
    job               TEXT    NOT NULL,
    id                TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    status_code       INTEGER NOT NULL,
    stage             TEXT,                   -- NULL for single-step jobs
    stages            TEXT    NOT NULL,       -- JSON array: the pipeline copied from the job
    attempts          INTEGER NOT NULL,
    max_attempts      INTEGER NOT NULL,
    priority          INTEGER NOT NULL,
    not_before        INTEGER,
    -- Task::claimable_at(): when a claim may take the task; NULL for terminal statuses, so the
    -- partial index below never holds finished work.
    claimable_at      INTEGER,
    token             INTEGER NOT NULL,
    version           INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_token       INTEGER,
    lease_acquired_at INTEGER,
    lease_expires_at  INTEGER,
    data              TEXT    NOT NULL,       -- JSON
    output            TEXT,                   -- JSON, set on success
    error_kind        TEXT,
    error_message     TEXT,
    error_detail      TEXT,
    history           TEXT    NOT NULL,       -- JSON array of the last 20 attempts
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    PRIMARY KEY (job, id)
);

-- claim_next: claim order (priority DESC, claimable_at, id) over claimable tasks only; stage is
-- carried so a per-stage claim filters inside the index.
CREATE INDEX tasktrack_task_claim ON tasktrack_task (job, priority DESC, claimable_at, id, stage)
    WHERE claimable_at IS NOT NULL;
-- list: keyset pagination by (updated_at, id).
CREATE INDEX tasktrack_task_updated ON tasktrack_task (job, updated_at, id);
-- list of the tasks that need a person (failed, exhausted, ignored), without scanning the job.
-- Partial, so the happy path (pending -> in_progress -> succeeded) never writes to it: every
-- index a transition touches is another page in the commit.
CREATE INDEX tasktrack_task_attention ON tasktrack_task (job, status, updated_at, id)
    WHERE status IN ('failed', 'exhausted', 'ignored');

-- counts(job): one row per (job, stage, status), kept by the triggers below in the same
-- transaction as the task write, so counts read a handful of rows whatever the job's size.
-- stage is '' for single-step tasks (stage names are never empty).
CREATE TABLE tasktrack_count (
    job    TEXT    NOT NULL,
    stage  TEXT    NOT NULL,
    status TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (job, stage, status)
) WITHOUT ROWID;

CREATE TRIGGER tasktrack_task_count_insert AFTER INSERT ON tasktrack_task BEGIN
    INSERT INTO tasktrack_count (job, stage, status, n) VALUES (new.job, coalesce(new.stage, ''), new.status, 1)
        ON CONFLICT (job, stage, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tasktrack_task_count_delete AFTER DELETE ON tasktrack_task BEGIN
    UPDATE tasktrack_count SET n = n - 1
        WHERE job = old.job AND stage = coalesce(old.stage, '') AND status = old.status;
END;

CREATE TRIGGER tasktrack_task_count_update AFTER UPDATE OF job, stage, status ON tasktrack_task
    WHEN old.status IS NOT new.status OR old.stage IS NOT new.stage OR old.job IS NOT new.job
BEGIN
    UPDATE tasktrack_count SET n = n - 1
        WHERE job = old.job AND stage = coalesce(old.stage, '') AND status = old.status;
    INSERT INTO tasktrack_count (job, stage, status, n) VALUES (new.job, coalesce(new.stage, ''), new.status, 1)
        ON CONFLICT (job, stage, status) DO UPDATE SET n = n + 1;
END;

-- The stable face for your own SQL: readable times, no internal columns. Columns are only ever
-- added to this view, never renamed or removed.
CREATE VIEW tasktrack_tasks AS
SELECT
    job,
    id,
    status,
    status_code,
    stage,
    attempts,
    max_attempts,
    priority,
    token,
    lease_owner,
    strftime('%Y-%m-%dT%H:%M:%fZ', lease_expires_at / 1000.0, 'unixepoch') AS lease_expires_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', not_before / 1000.0, 'unixepoch')       AS not_before,
    error_kind,
    error_message,
    error_detail,
    data,
    output,
    history,
    strftime('%Y-%m-%dT%H:%M:%fZ', created_at / 1000.0, 'unixepoch')       AS created_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', updated_at / 1000.0, 'unixepoch')       AS updated_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', started_at / 1000.0, 'unixepoch')       AS started_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', finished_at / 1000.0, 'unixepoch')      AS finished_at
FROM tasktrack_task;
