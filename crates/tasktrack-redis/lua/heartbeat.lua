-- Store::heartbeat, natively: lifecycle::check_fence then lifecycle::heartbeat (expiry moves to
-- now + lease; the lease's entry in the delayed queue moves with it).
-- ARGV: id, fence (`<token>:<acquired ms>`), lease ms, now. Returns the new fields, 0 for a
-- stale lease, or an error reply naming the field of a corrupt task (common.lua: `check`;
-- nothing written).
local id, now = ARGV[1], tonumber(ARGV[4])
local f = load(id)
if f == nil then return 0 end
local bad = check(f)
if bad then return redis.error_reply(corrupt(id, f, bad)) end
if f.status ~= 'in_progress' or fence(f) ~= ARGV[2] then return 0 end
local old = prior(f)
local orig = snapshot(f)
f.exp = digits(expiry(now, tonumber(ARGV[3])))
touch(f, now)
unindex(id, old)
index(id, f)
store(id, f, orig)
return finish(flatten(f))
