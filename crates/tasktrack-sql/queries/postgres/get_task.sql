SELECT * FROM {t}task WHERE job = $1 AND id = $2
