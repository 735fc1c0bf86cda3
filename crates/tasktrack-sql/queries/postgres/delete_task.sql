DELETE FROM {t}task WHERE job = $1 AND id = $2 AND version = $3 AND created_at = $4
