-- The conditional write of the compare-and-swap path: the rule was applied in Rust
-- (tasktrack_core::lifecycle) to the row read at `version`; write it only if nobody wrote since.
UPDATE {t}task SET
    status = ?, stage = ?, stages = ?, attempts = ?, max_attempts = ?, priority = ?,
    not_before = ?, claim_at = ?, lease_owner = ?, lease_token = ?, lease_acquired_at = ?,
    lease_expires_at = ?, token = ?, version = ?, data = ?, output = ?, error_kind = ?,
    error_message = ?, error_detail = ?, history = ?, created_at = ?, updated_at = ?,
    started_at = ?, finished_at = ?
WHERE job = ? AND id = ? AND version = ? AND created_at = ?
