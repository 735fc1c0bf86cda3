UPDATE {t}job SET state = $2, version = $3, doc = $4 WHERE name = $1 AND version = $5
