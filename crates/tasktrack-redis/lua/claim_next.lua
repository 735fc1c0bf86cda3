-- Store::claim_next, natively: lifecycle::claim (grant, and expire for a lapsed lease) applied to
-- the head of the job's ready queue, up to `limit` tasks, in one atomic step.
--
-- Queues per job (and per job and stage): `r` holds tasks claimable now, ordered by member bytes
-- (priority descending, claimable_at, id); `d` holds tasks claimable later (retry backoff,
-- not_before, and every live lease by its expiry), scored by that instant. Due entries of `d`
-- are promoted to `r` first, so an expired lease is reclaimed by the same script that claims.
-- ARGV: owner, lease ms, limit, now, stage ('' for any). Returns {id, fields...} per granted task.
local owner, lease_ms, limit, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local r, d = B .. 'r', B .. 'd'
if ARGV[5] ~= '' then r, d = r .. ':' .. ARGV[5], d .. ':' .. ARGV[5] end

-- Promote what became due; bounded per call so one call stays O(log n) per moved entry.
local due = redis.call('ZRANGEBYSCORE', d, '-inf', now, 'LIMIT', 0, 1000)
if #due > 0 then
  local args = {}
  for i, m in ipairs(due) do
    args[2 * i - 1] = 0
    args[2 * i] = m
  end
  redis.call('ZADD', r, unpack(args))
  redis.call('ZREM', d, unpack(due))
end

local out = {}
local skip = 0
while #out < limit and skip < 100 do
  local heads = redis.call('ZRANGE', r, skip, skip + (limit - #out) - 1)
  if #heads == 0 then break end
  for _, m in ipairs(heads) do
    if #out >= limit then break end
    local id = string.sub(m, 21)
    local f = load(id)
    if f == nil or f.qm ~= m then
      -- An entry no task owns any more (cannot happen while every write goes through these
      -- scripts); drop it rather than loop on it.
      redis.call('ZREM', r, m)
    else
      local at = claimable_at(f)
      if at == nil or at > now then
        -- Promoted by a caller whose clock runs ahead of ours: not claimable at our `now`.
        skip = skip + 1
      else
        local old = { status = f.status, stage = f.stage, updated = f.updated, qm = f.qm }
        local orig = snapshot(f)
        local granted = true
        if f.status == 'in_progress' then
          -- lifecycle::expire: the dead attempt is recorded as `lease_expired`; at max_attempts
          -- the task is exhausted instead of claimed (conformance: lease::expired_lease_*).
          local msg = 'lease expired'
          if f.owner then msg = 'lease of ' .. f.owner .. ' expired at ' .. iso(f.exp) end
          local err = '{"kind":"lease_expired","message":' .. cjson.encode(msg) .. ',"detail":null}'
          record(f, 'lease_expired', err, now)
          drop_lease(f)
          f.error = err
          if tonumber(f.attempts) >= tonumber(f.max_attempts) then
            f.status = 'exhausted'
            f.finished = tostring(now)
            granted = false
          else
            f.status = 'failed'
            f.nb = nil
          end
          touch(f, now)
        end
        if granted then
          -- lifecycle::claim -> grant: attempts + 1, token + 1, a fresh lease.
          f.status = 'in_progress'
          f.attempts = tostring(tonumber(f.attempts) + 1)
          f.token = tostring(tonumber(f.token) + 1)
          f.nb = nil
          f.started = tostring(now)
          f.finished = nil
          f.owner = owner
          f.ltoken = f.token
          f.acq = tostring(now)
          f.exp = tostring(now + lease_ms)
          touch(f, now)
        end
        unindex(id, old, true)
        index(id, f)
        store(id, f, orig)
        if granted then out[#out + 1] = { id, flatten(f) } end
      end
    end
  end
end
return out
