-- The conditional write of the compare-and-swap path: the rule was applied in Rust
-- (tasktrack_core::lifecycle) to the row read at `version`; write it only if nobody wrote since.
UPDATE {t}task SET
    status = $1, stage = $2, stages = $3, attempts = $4, max_attempts = $5, priority = $6,
    not_before = $7, claim_at = $8, lease_owner = $9, lease_token = $10, lease_acquired_at = $11,
    lease_expires_at = $12, token = $13, version = $14, data = $15, output = $16, error_kind = $17,
    error_message = $18, error_detail = $19, history = $20, created_at = $21, updated_at = $22,
    started_at = $23, finished_at = $24
WHERE job = $25 AND id = $26 AND version = $27 AND created_at = $28
