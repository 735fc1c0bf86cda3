-- Batched completion: succeed.sql for many leases in one statement (one round trip, one commit).
-- Restates lifecycle::succeed for single-step tasks, each row fenced as lifecycle::check_fence
-- says (in_progress with the presented token); the history record of each is built in Rust from
-- its lease, and the WHERE clause checks everything it was built from. Rows that do not match are
-- left alone; the caller sends those through the general path.
-- `t.status + 0 = 10`, not `t.status = 10`: the same test, written so the planner cannot use the
-- (job, status, updated_at) index for it. With `status = 10` it did, scanning every in_progress
-- entry of the job (dead ones too, until a vacuum) once per lease instead of one primary-key
-- lookup per lease: 0.27 ms per task at 100k tasks, against 0.1 ms at 2k.
-- handoff_many.sql restates this UPDATE on purpose (each file is one statement the server
-- prepares whole; see handoff.sql): a change here goes there too.
UPDATE {t}task t SET
    status = 40,
    claim_at = NULL,
    lease_owner = NULL, lease_token = NULL, lease_acquired_at = NULL, lease_expires_at = NULL,
    error_kind = NULL, error_message = NULL, error_detail = NULL,
    output = v.output,
    history = (CASE WHEN jsonb_array_length(t.history) >= $10 THEN t.history - 0 ELSE t.history END)
        || jsonb_build_array(v.rec),
    finished_at = $9,
    updated_at = $9,
    version = t.version + 1
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::jsonb[], $7::jsonb[], $8::bigint[])
    AS v(job, id, token, owner, attempts, output, rec, acquired)
WHERE t.job = v.job COLLATE "C" AND t.id = v.id COLLATE "C" AND t.status + 0 = 10 AND t.lease_token = v.token
    AND t.lease_owner = v.owner AND t.attempts = v.attempts AND t.lease_acquired_at = v.acquired
    AND t.stage IS NULL AND jsonb_typeof(t.history) = 'array'
RETURNING t.*
