-- Documents::delete_job: removes a job record and its index entries if still at the expected
-- version. KEYS[1]: the jobs base. ARGV: name, expected version. Returns 1, or 0.
local J = KEYS[1]
local name = ARGV[1]
if redis.call('HGET', J .. 'ver', name) ~= ARGV[2] then return 0 end
local state = redis.call('HGET', J .. 'state', name)
if state then redis.call('ZREM', J .. 'st:' .. state, name) end
redis.call('HDEL', J .. 'rec', name)
redis.call('HDEL', J .. 'ver', name)
redis.call('HDEL', J .. 'state', name)
redis.call('ZREM', J .. 'all', name)
return 1
