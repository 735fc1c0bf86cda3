SELECT * FROM {t}task WHERE job = ? AND id = ?
