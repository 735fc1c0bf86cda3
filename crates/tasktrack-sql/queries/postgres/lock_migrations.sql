-- Serialises concurrent `init`s (several workers starting at once) on one advisory lock.
SELECT pg_advisory_xact_lock(hashtext($1))
