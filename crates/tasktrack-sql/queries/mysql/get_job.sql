SELECT doc FROM {t}job WHERE name = ?
