-- Store::claim_next, natively: `claim_head` (common.lua) in one atomic step.
-- ARGV: owner, lease ms, limit, now, stage ('' for any). Returns {id, fields...} per granted task.
return claim_head(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5])
