DELETE FROM {t}task WHERE job = ? AND id = ? AND version = ? AND created_at = ?
