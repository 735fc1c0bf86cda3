SELECT doc FROM {t}job WHERE state = ? ORDER BY name
