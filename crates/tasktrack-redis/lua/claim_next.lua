-- Store::claim_next, natively: `claim_head` (common.lua) in one atomic step.
-- ARGV: owner, lease ms, limit, now, stage ('' for any). Returns {id, fields...} per granted task.
local now = tonumber(ARGV[4])
return finish(claim_head(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), now, ARGV[5]))
