DELETE FROM {t}job WHERE name = ? AND version = ?
