-- Store::fail, natively: lifecycle::check_fence then lifecycle::fail. The retry instant
-- (now + Backoff::delay(key, attempts)) is computed in Rust from the lease's attempt number and
-- passed in; if the task's attempts differ from it the script answers -1 and the caller takes
-- the compare-and-set path instead.
-- ARGV: id, fence (`<token>:<acquired ms>`), attempt, error JSON, retryable (1/0), retry
-- instant, now.
-- Returns the new fields, 0 for a stale lease, -1 for "use the slow path", or an error reply
-- naming the field of a corrupt task (common.lua: `check`); nothing is written but the fields.
local id, now = ARGV[1], tonumber(ARGV[7])
local f = load(id)
if f == nil then return 0 end
local bad = check(f)
if bad then return redis.error_reply(corrupt(id, f, bad)) end
if f.status ~= 'in_progress' or fence(f) ~= ARGV[2] then return 0 end
if f.attempts ~= ARGV[3] then return -1 end
local old = prior(f)
local orig = snapshot(f)
record(f, 'failed', ARGV[4], now)
drop_lease(f)
f.error = ARGV[4]
if ARGV[5] == '1' and tonumber(f.attempts) < tonumber(f.max_attempts) then
  f.status = 'failed'
  f.nb = ARGV[6]
else
  f.status = 'exhausted'
  f.finished = digits(now)
end
touch(f, now)
unindex(id, old)
index(id, f)
store(id, f, orig)
return finish(flatten(f))
