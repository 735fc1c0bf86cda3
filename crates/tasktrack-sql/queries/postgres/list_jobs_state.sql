SELECT doc FROM {t}job WHERE state = $1 ORDER BY name
