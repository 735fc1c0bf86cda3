-- tasktrack schema, version 2 (MariaDB >= 10.6, MySQL 8): the last error's columns hold any
-- length. Version 1 declared error_kind and error_message as TEXT (at most 65,535 bytes), so under
-- strict mode a longer error (the library's Tracker records the whole error chain) made `fail`
-- fail with "Data too long" and the outcome was lost. error_detail was LONGTEXT already; it is
-- restated so that this file names every error column.
--
-- Re-runnable (MySQL DDL is not transactional, so an interrupted `init` runs this again):
-- modifying a column to the type it already has changes nothing. The analytics view
-- ({t}tasks) selects these columns by name and stays valid; its columns become LONGTEXT.
-- The other text columns need no change: lease_owner is VARCHAR(512) and worker ids are at
-- most 512 bytes (the core's key limit), stage is VARBINARY(512) for stage names of the same
-- limit, and every JSON column is LONGTEXT.
ALTER TABLE {t}task
    MODIFY error_kind LONGTEXT NULL,
    MODIFY error_message LONGTEXT NULL,
    MODIFY error_detail LONGTEXT NULL;
