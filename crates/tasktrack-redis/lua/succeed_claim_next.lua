-- Store::succeed_and_claim_next, natively: `succeed_lease` then `claim_head` (common.lua) on the
-- same job, in one atomic step. A stale lease answers 0 and claims nothing; a task the success
-- moved to its next pipeline stage is pending at once and may be claimed by this same call.
-- ARGV: id, fence (`<token>:<acquired ms>`), output JSON, now, owner, lease ms, limit, stage ('' for any).
-- Returns 0 for a stale lease, else {done task's fields, {{id, fields...} per granted task}}; a
-- corrupt task is an error reply naming its field, and nothing is written or claimed.
local now = tonumber(ARGV[4])
local done = succeed_lease(ARGV[1], ARGV[2], ARGV[3], now)
if done == 0 then return 0 end
if type(done) == 'string' then return redis.error_reply(done) end
return finish({ done, claim_head(ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), now, ARGV[8]) })
