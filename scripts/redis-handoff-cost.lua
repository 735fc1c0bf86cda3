-- The server's own cost of one hand-off, warm: appended to crates/tasktrack-redis/lua/common.lua
-- by scripts/redis-handoff-cost and run as one EVAL. It seeds ARGV[1] pending tasks in the job
-- whose key base is KEYS[1], then drains them as one worker's hand-offs would (succeed_lease,
-- then claim_head, then the counter moves), with no network, no client and no sleep between
-- calls. Returns {tasks drained, µs per hand-off}. Blocks the server while it runs.
local n_tasks = tonumber(ARGV[1])
local now = 1795490000000
local created = string.format('%d', now)
for i = 1, n_tasks do
  local f = { status = 'pending', stages = '[]', attempts = '0', max_attempts = '3', priority = '0',
    token = '0', version = '1', data = '{"i":1}', created = created, updated = created }
  index(string.format('%08d', i), f)
  store(string.format('%08d', i), f)
end
finish(0)

local function micros()
  local t = redis.call('TIME')
  return t[1] * 1e6 + t[2]
end
-- The lease's fence as the client sends it: `<token>:<acquired ms>`.
local function fence_of(flat)
  local token, acq
  for i = 1, #flat, 2 do
    if flat[i] == 'ltoken' then token = flat[i + 1] end
    if flat[i] == 'acq' then acq = flat[i + 1] end
  end
  return token .. ':' .. acq
end

local started = micros()
local claimed = finish(claim_head('w', 30000, 1, now + 1, ''))
local done_count = 0
while #claimed > 0 do
  local at = now + 2 + done_count
  local done = succeed_lease(claimed[1][1], fence_of(claimed[1][2]), '{"ok":true}', at)
  if done == 0 then return 'stale lease after ' .. done_count .. ' hand-offs' end
  claimed = finish({ done, claim_head('w', 30000, 1, at, '') })[2]
  done_count = done_count + 1
end
return { done_count, tostring((micros() - started) / done_count) }
