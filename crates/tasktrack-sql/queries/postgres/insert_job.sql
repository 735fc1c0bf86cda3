INSERT INTO {t}job (name, state, version, doc) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING
