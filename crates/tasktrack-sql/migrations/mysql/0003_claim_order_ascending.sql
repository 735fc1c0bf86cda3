-- tasktrack schema, version 3 (MariaDB >= 10.6, MySQL 8): the claim indexes hold claim order
-- with every part ascending. Version 1 declared them `(…, priority DESC, claim_at, id)`, but
-- MariaDB before 10.8 ignores DESC in an index definition and builds `priority` ascending: a
-- claim's `ORDER BY priority DESC, claim_at, id` could then not be read off the index, so
-- MariaDB 10.6 and 10.7 sorted the job's claimable rows (EXPLAIN: `key: PRIMARY, Using
-- filesort`) and, under FOR UPDATE, locked every row they read before the LIMIT. A stored
-- generated `neg_priority = -priority` (BIGINT: the negation of INT's minimum does not fit an
-- INT) makes claim order `neg_priority, claim_at, id`, ascending on every server; the claim
-- statements (queries/mysql/claim_lock.sql and the others) order by it.
--
-- One ALTER TABLE, so the column and both indexes change together (MariaDB >= 10.6 and MySQL 8
-- have atomic DDL: it happens entirely or not at all). MySQL DDL is not transactional, so an
-- interrupted `init` runs this again: the ALTER runs only if the column is not there yet. MySQL 8
-- has neither `ADD COLUMN IF NOT EXISTS` nor `DROP INDEX IF EXISTS`, hence the check through
-- information_schema and a prepared statement. Adding a stored column copies the table (reads go
-- on, writes to the task table wait until the copy ends; docs/backends/mysql.md).
SET @tasktrack_migration_3 = IF(
    (SELECT COUNT(*) FROM information_schema.COLUMNS
        WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{t}task'
            AND COLUMN_NAME = 'neg_priority') = 0,
    'ALTER TABLE {t}task
        ADD COLUMN neg_priority BIGINT AS (-priority) STORED AFTER claimable,
        DROP INDEX {t}task_claim,
        DROP INDEX {t}task_claim_stage,
        ADD KEY {t}task_claim (job, claimable, neg_priority, claim_at, id),
        ADD KEY {t}task_claim_stage (job, claimable, stage, neg_priority, claim_at, id)',
    'DO 0');
PREPARE tasktrack_migration_3 FROM @tasktrack_migration_3;
EXECUTE tasktrack_migration_3;
DEALLOCATE PREPARE tasktrack_migration_3;
SET @tasktrack_migration_3 = NULL;
