SELECT doc FROM {t}job WHERE name = $1
