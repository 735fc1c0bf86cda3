-- Store::succeed and Store::succeed_many, natively: `succeed_lease` (common.lua) for each lease.
-- Each entry stands alone: a stale lease answers 0 for that entry and the others still succeed,
-- exactly as one call each would.
-- ARGV: now, then per lease: id, fence (`<token>:<acquired ms>`), output JSON.
-- Returns one answer per lease, in order: the task's new fields, 0 for a stale lease, or the
-- text `TASKTRACK_CORRUPT <field> ...` for a corrupt task (common.lua: `corrupt`; nothing
-- written for that lease, the others proceed).
local now = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV, 3 do
  out[#out + 1] = succeed_lease(ARGV[i], ARGV[i + 1], ARGV[i + 2], now)
end
return finish(out)
