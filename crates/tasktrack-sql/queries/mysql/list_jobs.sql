SELECT doc FROM {t}job ORDER BY name
