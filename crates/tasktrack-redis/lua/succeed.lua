-- Store::succeed, natively: lifecycle::check_fence then lifecycle::succeed (record the attempt,
-- drop the lease, clear the error, write the output; next pipeline stage or `succeeded`).
-- ARGV: id, token, output JSON, now. Returns the new fields, or 0 for a stale lease.
local id, now = ARGV[1], tonumber(ARGV[4])
local f = load(id)
if f == nil or f.status ~= 'in_progress' or f.ltoken ~= ARGV[2] then return 0 end
local old = { status = f.status, stage = f.stage, updated = f.updated, qm = f.qm }
local orig = snapshot(f)
record(f, 'succeeded', nil, now)
drop_lease(f)
f.error = nil
f.output = ARGV[3]
local nxt = nil
if f.stage then
  local stages = cjson.decode(f.stages)
  for i, s in ipairs(stages) do
    if s == f.stage then
      nxt = stages[i + 1]
      break
    end
  end
end
if nxt then
  f.stage = nxt
  f.status = 'pending'
  f.attempts = '0'
  f.nb = nil
  f.started = nil
else
  f.status = 'succeeded'
  f.finished = tostring(now)
end
touch(f, now)
unindex(id, old)
index(id, f)
store(id, f, orig)
return flatten(f)
