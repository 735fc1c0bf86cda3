DELETE FROM {t}task WHERE job = ? AND id = ? AND version = ?
