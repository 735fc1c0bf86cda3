-- claim_next in one statement (one round trip, one commit). A claim at a stage runs the same
-- statement with its `/*stage: … */` filter uncommented (`at_stage`; $6 the stage).
--
-- candidates: the first $4 claimable rows in claim order, an index range scan of
-- {p}task_claim; FOR UPDATE SKIP LOCKED makes concurrent workers take disjoint rows without
-- waiting for each other. No status test here: with one, the planner took the
-- (job, status, updated_at) index and sorted every pending row (9 claims/s at 100,000 tasks;
-- pinned by postgres_statements_use_the_indexes_they_were_written_for).
--
-- granted: restates lifecycle::claim → grant for pending/failed rows (not_before passed, which
-- claim_at <= now says): in_progress, attempts + 1, token + 1, a fresh lease carrying the new
-- token, not_before cleared, started_at = now, finished_at cleared, version + 1. Pinned by
-- claim_grants_a_lease_and_counts_an_attempt and the model check.
--
-- Rows whose lease expired (status 10) are returned ungranted: the expired-lease rule
-- (lifecycle::expire: history, exhaustion at max_attempts) is applied in Rust by the caller. So
-- is a row edited by hand into a finished status with its claim_at left: the caller writes it
-- back, which clears claim_at (pinned by a_row_finished_by_hand_does_not_block_claims). And so
-- is a row whose token or version is at the largest bigint (only a hand edit puts it there):
-- granting it would overflow and fail the whole statement; the caller sets it aside
-- (a_row_a_claim_cannot_advance_is_set_aside).
--
-- handoff.sql and handoff_many.sql restate this claim on purpose (each file is one statement
-- the server prepares whole; see handoff.sql): a change here goes there too.
WITH candidates AS (
    SELECT job, id, status, priority AS rank_priority, claim_at AS rank_at,
        token < 9223372036854775807 AND version < 9223372036854775807 AS advanceable
    FROM {t}task
    WHERE job = $1 AND claim_at IS NOT NULL AND claim_at <= $2 /*stage: AND stage = $6 */
    ORDER BY priority DESC, claim_at, id
    LIMIT $4
    FOR UPDATE SKIP LOCKED
), granted AS (
    UPDATE {t}task t SET
        status = 10,
        attempts = t.attempts + 1,
        token = t.token + 1,
        not_before = NULL,
        claim_at = $3,
        lease_owner = $5,
        lease_token = t.token + 1,
        lease_acquired_at = $2,
        lease_expires_at = $3,
        started_at = $2,
        finished_at = NULL,
        version = t.version + 1,
        updated_at = $2
    FROM candidates c
    WHERE t.job = c.job AND t.id = c.id AND c.status IN (0, 20) AND c.advanceable
    RETURNING t.*, c.rank_priority, c.rank_at, true AS granted
)
SELECT * FROM granted
UNION ALL
SELECT t.*, c.rank_priority, c.rank_at, false AS granted
FROM {t}task t JOIN candidates c ON t.job = c.job AND t.id = c.id
WHERE c.status NOT IN (0, 20) OR NOT c.advanceable
ORDER BY rank_priority DESC, rank_at, id
