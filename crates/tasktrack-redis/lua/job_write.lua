-- Documents::insert_job / replace_job: writes a job record (computed in Rust by
-- lifecycle::apply_job_spec / move_job_state) if the stored version is the expected one ("" for
-- an insert: only if absent), and moves it between the per-state indexes in the same step.
-- KEYS[1]: the jobs base `<prefix>:{%jobs}:`. ARGV: name, expected version, new version, JSON, state.
local J = KEYS[1]
local name, expected = ARGV[1], ARGV[2]
local current = redis.call('HGET', J .. 'ver', name)
if expected == '' then
  if current then return 0 end
elseif current ~= expected then
  return 0
end
local old_state = redis.call('HGET', J .. 'state', name)
if old_state then redis.call('ZREM', J .. 'st:' .. old_state, name) end
redis.call('HSET', J .. 'rec', name, ARGV[4])
redis.call('HSET', J .. 'ver', name, ARGV[3])
redis.call('HSET', J .. 'state', name, ARGV[5])
redis.call('ZADD', J .. 'st:' .. ARGV[5], 0, name)
redis.call('ZADD', J .. 'all', 0, name)
return 1
