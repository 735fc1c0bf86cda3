-- succeed in one statement: restates lifecycle::succeed for a single-step task (stage IS NULL),
-- fenced as lifecycle::check_fence says (in_progress with the presented token). The history
-- record ($8) is built in Rust from the lease; the WHERE clause checks that everything it was
-- built from (owner, attempt, acquired_at) is what the row holds, else no row changes and the
-- caller takes the general path. The history keeps the newest $10 records (HISTORY_LIMIT). A
-- history that is not a list (a row edited by hand) takes the general path too, which answers
-- Corrupt for this lease alone (pinned by a_damaged_row_fails_only_its_own_lease).
-- `status + 0 = 10`, as in succeed_many.sql: so that the planner takes the primary key, never the
-- (job, status, updated_at) index, which it chose on a table not yet analyzed (pinned by
-- postgres_statements_use_the_indexes_they_were_written_for).
-- Pinned by succeed_records_output_and_clears_the_error and
-- stale_holder_cannot_heartbeat_succeed_fail_or_release.
-- handoff.sql restates this UPDATE on purpose (each file is one statement the server prepares
-- whole; see handoff.sql): a change here goes there too.
UPDATE {t}task SET
    status = 40,
    claim_at = NULL,
    lease_owner = NULL, lease_token = NULL, lease_acquired_at = NULL, lease_expires_at = NULL,
    error_kind = NULL, error_message = NULL, error_detail = NULL,
    output = $6,
    history = (CASE WHEN jsonb_array_length(history) >= $10 THEN history - 0 ELSE history END)
        || jsonb_build_array($8::jsonb),
    finished_at = $7,
    updated_at = $7,
    version = version + 1
WHERE job = $1 AND id = $2 AND status + 0 = 10 AND lease_token = $3 AND lease_owner = $4
    AND attempts = $5 AND lease_acquired_at = $9 AND stage IS NULL
    AND jsonb_typeof(history) = 'array'
RETURNING *
