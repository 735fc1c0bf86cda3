UPDATE {t}job SET state = $1, version = $2, doc = $3 WHERE name = $4 AND version = $5
