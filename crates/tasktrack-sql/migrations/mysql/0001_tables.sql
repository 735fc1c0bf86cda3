-- tasktrack schema, version 1 (MariaDB >= 10.6, MySQL 8). `{t}` is the table prefix; the
-- database is the one named in the URL.
--
-- Times are BIGINT milliseconds since the Unix epoch, always written by the client (`now` is a
-- request parameter; the server's clock is never read). Names are VARBINARY: byte order, exact
-- round trips, and a primary key of at most 1024 bytes (utf8mb4 VARCHAR(512) twice would not fit
-- InnoDB's 3072-byte key limit). JSON is stored as LONGTEXT, exactly as written.

CREATE TABLE IF NOT EXISTS {t}job (
    name        VARBINARY(512) NOT NULL PRIMARY KEY,
    state       VARCHAR(16) NOT NULL,
    version     BIGINT NOT NULL,
    doc         LONGTEXT NOT NULL,
    -- jobs(state) is an index range, not a scan.
    KEY {t}job_state (state, name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS {t}task (
    job                 VARBINARY(512) NOT NULL,
    id                  VARBINARY(512) NOT NULL,
    status              SMALLINT NOT NULL,
    stage               VARBINARY(512) NULL,
    stages              LONGTEXT NOT NULL,
    attempts            BIGINT NOT NULL,
    max_attempts        BIGINT NOT NULL,
    priority            INT NOT NULL,
    not_before          BIGINT NULL,
    claim_at            BIGINT NULL,
    -- MySQL has no partial indexes: this flag leads the claim indexes, so a claim's range scan
    -- (claimable = 1) never walks finished tasks.
    claimable           TINYINT AS (claim_at IS NOT NULL) STORED,
    lease_owner         VARCHAR(512) NULL,
    lease_token         BIGINT NULL,
    lease_acquired_at   BIGINT NULL,
    lease_expires_at    BIGINT NULL,
    token               BIGINT NOT NULL,
    version             BIGINT NOT NULL,
    data                LONGTEXT NOT NULL,
    output              LONGTEXT NULL,
    error_kind          TEXT NULL,
    error_message       TEXT NULL,
    error_detail        LONGTEXT NULL,
    history             LONGTEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    started_at          BIGINT NULL,
    finished_at         BIGINT NULL,
    PRIMARY KEY (job, id),
    KEY {t}task_claim (job, claimable, priority DESC, claim_at, id),
    KEY {t}task_claim_stage (job, claimable, stage, priority DESC, claim_at, id),
    KEY {t}task_updated (job, updated_at, id),
    KEY {t}task_status_updated (job, status, updated_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Counts per (job, stage, status), kept by the triggers below in the same transaction as every
-- write: counts() reads O(statuses × shards) rows, never the tasks. Each connection adds to
-- shard CONNECTION_ID() mod 64 so that workers rarely queue on one counter row; a shard may go
-- negative, the sum is exact.
CREATE TABLE IF NOT EXISTS {t}task_count (
    job         VARBINARY(512) NOT NULL,
    stage_key   VARBINARY(513) NOT NULL,
    status      SMALLINT NOT NULL,
    shard       INT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (job, stage_key, status, shard)
) ENGINE = InnoDB;

DROP TRIGGER IF EXISTS {t}count_insert;
CREATE TRIGGER {t}count_insert AFTER INSERT ON {t}task FOR EACH ROW
    INSERT INTO {t}task_count (job, stage_key, status, shard, n)
    VALUES (NEW.job, IF(NEW.stage IS NULL, '', CONCAT('s', NEW.stage)), NEW.status, CONNECTION_ID() % 64, 1)
    ON DUPLICATE KEY UPDATE n = n + 1;

DROP TRIGGER IF EXISTS {t}count_update;
CREATE TRIGGER {t}count_update AFTER UPDATE ON {t}task FOR EACH ROW
BEGIN
    IF NOT (OLD.status <=> NEW.status AND OLD.stage <=> NEW.stage AND OLD.job <=> NEW.job) THEN
        INSERT INTO {t}task_count (job, stage_key, status, shard, n)
        VALUES (OLD.job, IF(OLD.stage IS NULL, '', CONCAT('s', OLD.stage)), OLD.status, CONNECTION_ID() % 64, -1)
        ON DUPLICATE KEY UPDATE n = n - 1;
        INSERT INTO {t}task_count (job, stage_key, status, shard, n)
        VALUES (NEW.job, IF(NEW.stage IS NULL, '', CONCAT('s', NEW.stage)), NEW.status, CONNECTION_ID() % 64, 1)
        ON DUPLICATE KEY UPDATE n = n + 1;
    END IF;
END;

DROP TRIGGER IF EXISTS {t}count_delete;
CREATE TRIGGER {t}count_delete AFTER DELETE ON {t}task FOR EACH ROW
    INSERT INTO {t}task_count (job, stage_key, status, shard, n)
    VALUES (OLD.job, IF(OLD.stage IS NULL, '', CONCAT('s', OLD.stage)), OLD.status, CONNECTION_ID() % 64, -1)
    ON DUPLICATE KEY UPDATE n = n - 1;

-- The documented analytics view (docs/backends/mysql.md): stable columns, UTC DATETIME(3) times.
CREATE OR REPLACE VIEW {t}tasks AS
SELECT
    CONVERT(job USING utf8mb4) AS job,
    CONVERT(id USING utf8mb4) AS id,
    CASE status WHEN 0 THEN 'pending' WHEN 10 THEN 'in_progress' WHEN 20 THEN 'failed'
        WHEN 30 THEN 'exhausted' WHEN 40 THEN 'succeeded' WHEN 50 THEN 'ignored' END AS status,
    CONVERT(stage USING utf8mb4) AS stage,
    attempts,
    error_kind,
    error_message,
    TIMESTAMPADD(MICROSECOND, created_at * 1000, TIMESTAMP('1970-01-01 00:00:00.000')) AS created_at,
    TIMESTAMPADD(MICROSECOND, updated_at * 1000, TIMESTAMP('1970-01-01 00:00:00.000')) AS updated_at,
    TIMESTAMPADD(MICROSECOND, finished_at * 1000, TIMESTAMP('1970-01-01 00:00:00.000')) AS finished_at,
    CASE WHEN finished_at IS NOT NULL AND started_at IS NOT NULL
        THEN (finished_at - started_at) / 1000.0 END AS duration,
    lease_owner,
    TIMESTAMPADD(MICROSECOND, lease_expires_at * 1000, TIMESTAMP('1970-01-01 00:00:00.000')) AS lease_expires_at,
    priority,
    data,
    output
FROM {t}task;
