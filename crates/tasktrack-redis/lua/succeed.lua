-- Store::succeed and Store::succeed_many, natively: for each lease, lifecycle::check_fence then
-- lifecycle::succeed (record the attempt, drop the lease, clear the error, write the output;
-- next pipeline stage or `succeeded`). Each entry stands alone: a stale lease answers 0 for that
-- entry and the others still succeed, exactly as one call each would.
-- ARGV: now, then per lease: id, token, output JSON.
-- Returns one answer per lease, in order: the task's new fields, or 0 for a stale lease.
local now = tonumber(ARGV[1])

-- The stage after `f.stage` in the task's pipeline, or nil (last stage, or no pipeline).
local function next_stage(f)
  if not f.stage then return nil end
  local stages = cjson.decode(f.stages)
  for i, s in ipairs(stages) do
    if s == f.stage then return stages[i + 1] end
  end
  return nil
end

local function succeed(id, token, output)
  local f = load(id)
  if f == nil or f.status ~= 'in_progress' or f.ltoken ~= token then return 0 end
  local old = { status = f.status, stage = f.stage, updated = f.updated, qm = f.qm }
  local orig = snapshot(f)
  record(f, 'succeeded', nil, now)
  drop_lease(f)
  f.error = nil
  f.output = output
  local nxt = next_stage(f)
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
end

local out = {}
for i = 2, #ARGV, 3 do
  out[#out + 1] = succeed(ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
return out
