-- Documents::insert_tasks: creates each task unless its id exists (create is idempotent).
-- ARGV: n, then per task: id, field count k, k field/value pairs. Returns one 0/1 per task.
local n = tonumber(ARGV[1])
local pos = 2
local out = {}
for i = 1, n do
  local id = ARGV[pos]
  local k = tonumber(ARGV[pos + 1])
  pos = pos + 2
  if redis.call('EXISTS', tkey(id)) == 1 then
    out[i] = 0
  else
    local f = {}
    for j = 0, k - 1 do f[ARGV[pos + 2 * j]] = ARGV[pos + 2 * j + 1] end
    index(id, f)
    store(id, f)
    out[i] = 1
  end
  pos = pos + 2 * k
end
return finish(out)
