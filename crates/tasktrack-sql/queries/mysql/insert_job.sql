INSERT IGNORE INTO {t}job (name, state, version, doc) VALUES (?, ?, ?, ?)
