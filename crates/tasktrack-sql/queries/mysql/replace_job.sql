UPDATE {t}job SET state = ?, version = ?, doc = ? WHERE name = ? AND version = ?
