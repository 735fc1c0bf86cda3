-- Takes a row that a claim met but cannot decode (edited by hand) out of the claim index, so that
-- it cannot stop its job's claims: only claim_at is cleared; status, lease and counts stay, and
-- get still answers Corrupt naming it. Once repaired by hand, a write of the task through the
-- store (tasktrack retry) sets claim_at again. Pinned by a_damaged_row_is_set_aside_by_claims.
UPDATE {t}task SET claim_at = NULL WHERE job = $1 AND id = $2
