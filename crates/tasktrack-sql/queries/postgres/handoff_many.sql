-- Hand-offs of several workers on one job in one statement (one round trip, one commit):
-- handoff.sql for each of them, combined (src/postgres/combine.rs). Input, one array element per
-- hand-off, in order: $2 id, $3 token, $4 owner, $5 attempt, $6 output, $7 history record,
-- $8 lease acquired_at, $9 now (of that hand-off), $10 owner of the next lease, $11 its expiry.
-- $1 job, $12 HISTORY_LIMIT, $13 the earliest of the hand-offs' `now` (what the claim compares
-- claim_at with, so no task is granted before any caller's clock says it is due).
--
-- done: succeed_many.sql's update (lifecycle::succeed for a single-step task, fenced as
-- lifecycle::check_fence says), each row stamped with its own hand-off's `now`. A hand-off whose
-- lease does not match writes nothing here and claims nothing; its caller takes the general path.
--
-- candidates / numbered / granted: claim_next.sql's claim, as many rows as `done` wrote (LIMIT),
-- the n-th grantable row in claim order granted to the n-th completed hand-off (by input order),
-- with that hand-off's owner, expiry and `now`. Rows completed by this statement are excluded
-- (`id <> ALL`): the claim reads the snapshot in which they are still in_progress. Expired-lease
-- rows (and rows finished by hand with claim_at left) are skipped: a hand-off left without a
-- grant claims on its own afterwards (claim_next, which applies lifecycle::expire). So is a row
-- whose token or version is at the largest bigint (claim_next sets it aside).
--
-- role: 0 for a completed row, 1 for a granted one; ord: the hand-off (1-based) it answers.
-- Pinned by concurrent_handoffs_grant_each_worker_its_own_lease (tests/backend.rs) and the
-- conformance suite's hand-off cases.
--
-- Duplicated on purpose, as handoff.sql is (see there): `done` restates succeed_many.sql's
-- update and `candidates` / `granted` claim_next.sql's claim, so that this file stays one
-- statement the server prepares whole. Keep the copies in step.
WITH input AS (
    SELECT * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::jsonb[],
                         $7::jsonb[], $8::bigint[], $9::bigint[], $10::text[], $11::bigint[])
        WITH ORDINALITY AS v(id, token, owner, attempts, output, rec, acquired, now, next_owner,
                             expires, ord)
), done AS (
    UPDATE {t}task t SET
        status = 40,
        claim_at = NULL,
        lease_owner = NULL, lease_token = NULL, lease_acquired_at = NULL, lease_expires_at = NULL,
        error_kind = NULL, error_message = NULL, error_detail = NULL,
        output = v.output,
        history = (CASE WHEN jsonb_array_length(t.history) >= $12 THEN t.history - 0 ELSE t.history END)
            || jsonb_build_array(v.rec),
        finished_at = v.now,
        updated_at = v.now,
        version = t.version + 1
    FROM input v
    WHERE t.job = $1 AND t.id = v.id COLLATE "C" AND t.status + 0 = 10 AND t.lease_token = v.token
        AND t.lease_owner = v.owner AND t.attempts = v.attempts AND t.lease_acquired_at = v.acquired
        AND t.stage IS NULL AND jsonb_typeof(t.history) = 'array'
    RETURNING t.*, v.ord
), claimers AS (
    SELECT v.*, row_number() OVER (ORDER BY v.ord) AS n
    FROM input v
    WHERE v.ord IN (SELECT ord FROM done)
), candidates AS (
    SELECT job, id, status, priority AS rank_priority, claim_at AS rank_at,
        token < 9223372036854775807 AND version < 9223372036854775807 AS advanceable
    FROM {t}task
    WHERE job = $1 AND claim_at IS NOT NULL AND claim_at <= $13 AND id <> ALL ($2::text[])
    ORDER BY priority DESC, claim_at, id
    LIMIT (SELECT count(*) FROM done)
    FOR UPDATE SKIP LOCKED
), numbered AS (
    SELECT c.*, row_number() OVER (ORDER BY c.rank_priority DESC, c.rank_at, c.id) AS n
    FROM candidates c
    WHERE c.status IN (0, 20) AND c.advanceable
), granted AS (
    UPDATE {t}task t SET
        status = 10,
        attempts = t.attempts + 1,
        token = t.token + 1,
        not_before = NULL,
        claim_at = w.expires,
        lease_owner = w.next_owner,
        lease_token = t.token + 1,
        lease_acquired_at = w.now,
        lease_expires_at = w.expires,
        started_at = w.now,
        finished_at = NULL,
        version = t.version + 1,
        updated_at = w.now
    FROM numbered c JOIN claimers w ON w.n = c.n
    WHERE t.job = c.job AND t.id = c.id
    RETURNING t.*, w.ord
)
SELECT d.*, 0 AS role FROM done d
UNION ALL
SELECT g.*, 1 AS role FROM granted g
