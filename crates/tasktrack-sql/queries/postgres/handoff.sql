-- succeed_and_claim_next in one statement (one round trip, one commit): the fast path of
-- succeed.sql ($1-$10, the same parameters) and then, only if it wrote its row, the claim of
-- claim_next.sql on the same job ($11 expires, $12 limit, $13 owner of the next lease).
--
-- done: succeed.sql's UPDATE, unchanged: restates lifecycle::succeed for a single-step task,
-- fenced as lifecycle::check_fence says; no row when the fast path does not apply (stale lease,
-- pipeline stage, ...) and the caller then takes the general path (succeed, then claim_next).
-- Pinned by succeed_and_claim_next_completes_then_claims and
-- succeed_and_claim_next_with_a_stale_lease_claims_nothing.
--
-- candidates / granted: claim_next.sql's, unchanged but for two tests: EXISTS (SELECT 1 FROM
-- done), so nothing is claimed unless the success happened; and id <> $2, because every part of
-- one statement reads the same snapshot, in which the completed row is still in_progress (and
-- claimable if its lease expired). Expired-lease rows (and rows finished by hand with claim_at
-- left, or whose token or version cannot advance) are returned ungranted (granted = false) and
-- the caller handles them as after claim_next.
--
-- role: 0 for the completed row (first), 1 for the claimed rows, in claim order.
--
-- A hand-off that claims at a stage runs the same statement with its `/*stage: … */` filter
-- uncommented (`at_stage`; $14 the stage).
--
-- Duplicated on purpose: `done` and `candidates` / `granted` are copies of succeed.sql and
-- claim_next.sql, not pieced together from them. Each file here is the whole text of one
-- statement, which the server parses, plans and prepares on its own, and which reads whole;
-- the parts differ in their parameter numbers and in the two tests above, so a shared fragment
-- would need a templating of its own. Keep the copies in step:
-- the conformance suite's succeed, claim and hand-off cases hold each copy to the same rules.
WITH done AS (
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
), candidates AS (
    SELECT job, id, status, priority AS rank_priority, claim_at AS rank_at,
        token < 9223372036854775807 AND version < 9223372036854775807 AS advanceable
    FROM {t}task
    WHERE job = $1 AND claim_at IS NOT NULL AND claim_at <= $7 /*stage: AND stage = $14 */ AND id <> $2
        AND EXISTS (SELECT 1 FROM done)
    ORDER BY priority DESC, claim_at, id
    LIMIT $12
    FOR UPDATE SKIP LOCKED
), granted AS (
    UPDATE {t}task t SET
        status = 10,
        attempts = t.attempts + 1,
        token = t.token + 1,
        not_before = NULL,
        claim_at = $11,
        lease_owner = $13,
        lease_token = t.token + 1,
        lease_acquired_at = $7,
        lease_expires_at = $11,
        started_at = $7,
        finished_at = NULL,
        version = t.version + 1,
        updated_at = $7
    FROM candidates c
    WHERE t.job = c.job AND t.id = c.id AND c.status IN (0, 20) AND c.advanceable
    RETURNING t.*, c.rank_priority, c.rank_at, true AS granted, 1 AS role
)
SELECT d.*, NULL::integer AS rank_priority, NULL::bigint AS rank_at, false AS granted, 0 AS role
FROM done d
UNION ALL
SELECT * FROM granted
UNION ALL
SELECT t.*, c.rank_priority, c.rank_at, false AS granted, 1 AS role
FROM {t}task t JOIN candidates c ON t.job = c.job AND t.id = c.id
WHERE c.status NOT IN (0, 20) OR NOT c.advanceable
ORDER BY role, rank_priority DESC, rank_at, id
