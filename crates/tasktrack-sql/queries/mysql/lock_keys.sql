-- Batched completion, step 1: lock the rows of the presented leases (by primary key).
SELECT * FROM {t}task WHERE (job, id) IN ({keys}) FOR UPDATE
