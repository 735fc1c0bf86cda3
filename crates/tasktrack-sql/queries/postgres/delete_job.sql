DELETE FROM {t}job WHERE name = $1 AND version = $2
