-- Shared prelude, prepended to every operation script (see src/scripts.rs).
--
-- KEYS[1] is the job's key base `<prefix>:{<job>}:`. Every key a script touches is derived from
-- it, so all of them carry the job's hash tag and live in one Redis Cluster slot.
--
-- A task is a hash (`<base>t:<id>`) of plain fields; user JSON (data, output, error, stages) is
-- stored as opaque strings that no script ever re-encodes, so numbers in user data keep their
-- exact text. Timestamps are integer milliseconds.
local B = KEYS[1]

local function tkey(id) return B .. 't:' .. id end

-- An empty table with room for every task field (src/codec.rs lists them). A table that grows
-- from empty is rehashed at each power of two; filling this one is about five times cheaper,
-- which was half of `load`'s time.
local function fields()
  return {
    status = nil, stage = nil, stages = nil, attempts = nil, max_attempts = nil, priority = nil,
    nb = nil, token = nil, version = nil, owner = nil, ltoken = nil, acq = nil, exp = nil,
    data = nil, output = nil, error = nil, history = nil, created = nil, updated = nil,
    started = nil, finished = nil, qm = nil, qx = nil,
  }
end

-- HGETALL as a table; nil when the hash does not exist.
local function load(id)
  local flat = redis.call('HGETALL', tkey(id))
  if #flat == 0 then return nil end
  local f = fields()
  for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  return f
end

-- Validation of a loaded task, before anything is written for it.
--
-- A script that fails halfway is not rolled back: the writes it made stay, the counter moves it
-- kept for `finish` are lost, and tasks it claimed are never returned. So every script checks a
-- task right after loading it, before its first write for that task: `check` names the first
-- field the scripts cannot compute with (a hash edited by hand, a partial write by another
-- tool), and the task is then refused (`corrupt`) or, by `claim_head`, set aside.
local find, tonum = string.find, tonumber
local STATUSES = {
  pending = true, in_progress = true, succeeded = true, failed = true, exhausted = true,
  ignored = true,
}
-- The first and last instants RFC 3339 can write, 0000-01-01T00:00:00.000Z and
-- 9999-12-31T23:59:59.999Z (Timestamp::MAX): a lease's instants are written into history that
-- way (`iso`). Instants before 1970 are negative milliseconds, as valid as any other.
local TS_MIN, TS_MAX = -62167219200000, 253402300799999

-- The expiry of a lease of `lease_ms` taken or renewed at `now`: Timestamp::plus, which stops at
-- TS_MAX (a later one would not pass `check` on the next write).
local function expiry(now, lease_ms)
  return math.min(now + lease_ms, TS_MAX)
end

-- Whether `v` is missing or not an integer Rust's `str::parse` accepts (digits after an optional
-- sign: `tonumber` alone would take ' 5', '1e3', '0x10', 'inf'), so that a task that passes also
-- decodes (src/codec.rs); unsigned (`bad_u`) or signed (`bad_s`). At most 15 characters: below
-- 2^53, where Lua's doubles stop being exact, with room for the `+ 1` of a claim or a write.
local function bad_u(v) return v == nil or #v > 15 or not find(v, '^%+?%d+$') end
local function bad_s(v) return v == nil or #v > 15 or not find(v, '^[-+]?%d+$') end

-- Whether `v` is not an instant `iso` writes so that it reads back: a signed integer (a `now`
-- before 1970 is negative) from TS_MIN to TS_MAX.
local function bad_instant(v)
  return bad_s(v) or tonum(v) < TS_MIN or tonum(v) > TS_MAX
end

-- The first field of `f` the scripts cannot use, or nil: a known status; attempts,
-- max_attempts (u32), priority (i32), token, version (u64), created, updated present and
-- integral; nb, started, finished, ltoken, acq, exp integral when present (acq and exp signed,
-- as a lease taken before 1970 has them, within what RFC 3339 writes), and the lease's
-- ltoken, acq, exp present with its owner. Lua work on fields already loaded, no Redis command:
-- about 2 µs per task. (`stages` is checked where it is read, in succeed_lease; the JSON texts
-- data, output, error and history are passed through unparsed.)
local function check(f)
  if not STATUSES[f.status] then return 'status' end
  local v = f.attempts
  if bad_u(v) or tonum(v) > 4294967294 then return 'attempts' end -- u32, and a claim adds one
  v = f.max_attempts
  if bad_u(v) or tonum(v) > 4294967295 then return 'max_attempts' end
  v = f.priority
  if bad_s(v) or tonum(v) < -2147483648 or tonum(v) > 2147483647 then return 'priority' end
  if bad_u(f.token) then return 'token' end
  if bad_u(f.version) then return 'version' end
  if bad_s(f.created) then return 'created' end
  if bad_s(f.updated) then return 'updated' end
  v = f.nb
  if v ~= nil and bad_s(v) then return 'nb' end
  v = f.started
  if v ~= nil and bad_s(v) then return 'started' end
  v = f.finished
  if v ~= nil and bad_s(v) then return 'finished' end
  local lease = f.owner ~= nil
  v = f.ltoken
  if (lease or v ~= nil) and bad_u(v) then return 'ltoken' end
  v = f.acq
  if (lease or v ~= nil) and bad_instant(v) then return 'acq' end
  v = f.exp
  if (lease or v ~= nil) and bad_instant(v) then return 'exp' end
  return nil
end

-- The answer for a task that failed `check` on `field`:
-- `TASKTRACK_CORRUPT <field> <missing|invalid> <task key>`, which src/error.rs maps to
-- Error::Corrupt. Single-task scripts return it as an error reply (`redis.error_reply`);
-- succeed.lua as that lease's entry, a plain string, so the rest of its batch goes on.
local function corrupt(id, f, field)
  local why = 'invalid'
  if f[field] == nil then why = 'missing' end
  return 'TASKTRACK_CORRUPT ' .. field .. ' ' .. why .. ' ' .. tkey(id)
end

-- An integer as decimal text. `tostring` formats Lua's doubles with '%.14g', which is slower and
-- turns 15 digits and more into exponent notation.
local function digits(n) return string.format('%d', n) end

-- cas::task_revision of a task that passed `check`, `<version>@<created>`, from the numbers its
-- fields hold (a hand edit may write `01` or `+1`, which read as 1: the revision Rust computed
-- from the task it decoded).
local function revision(f)
  return digits(tonumber(f.version)) .. '@' .. digits(tonumber(f.created))
end

-- Task::claimable_at: pending/failed at not_before (or creation), in_progress at lease expiry,
-- finished tasks never.
local function claimable_at(f)
  local s = f.status
  if s == 'pending' or s == 'failed' then return tonumber(f.nb or f.created) end
  if s == 'in_progress' then return tonumber(f.exp or 0) end
  return nil
end

-- An instant as the 12 characters that place it in a member, in the same byte order as time
-- (src/list.rs: `time12`, which reads them back): from 1970 on, 12 hex digits (up to
-- 0xffffffffffff, past Timestamp::MAX); before 1970 (negative milliseconds), '-', which sorts
-- before every digit, then 11 base-32 digits (0-9, a-v, in byte order) of ms + 2^46, so that
-- earlier sorts first. Clamping every instant before 1970 to zero gave them one place, ordered
-- by id: a listing's cursor then skipped tasks, and claims ignored their time. 2^46 ms before
-- 1970 is before TS_MIN, the earliest instant a lease writes; earlier ones share its place.
-- Memoized: the members one call writes mostly carry the same instant (its `now`).
local B32, BEFORE_1970 = '0123456789abcdefghijklmnopqrstuv', 70368744177664
local time12_ms, time12_text
local function time12(ms)
  if ms == time12_ms then return time12_text end
  local text
  if ms >= 0 then
    text = string.format('%012x', math.min(ms, 281474976710655))
  else
    local v, digits = math.max(ms + BEFORE_1970, 0), {}
    for i = 11, 1, -1 do
      local d = v % 32
      digits[i] = string.sub(B32, d + 1, d + 1)
      v = (v - d) / 32
    end
    text = '-' .. table.concat(digits)
  end
  time12_ms, time12_text = ms, text
  return text
end

-- Claim-queue member: priority descending, then claimable_at, then id. All members of the ready
-- set share score 0, so Redis orders them by these bytes (that is the claim order).
local function qmember(f, id, at)
  return string.format('%08x', 2147483647 - tonumber(f.priority)) .. time12(at) .. id
end

-- Listing member: updated_at then id (TaskQuery order), in a lex-ordered set per status.
local function lmember(f, id) return time12(tonumber(f.updated)) .. id end

local function ctr(f)
  if f.stage then return f.status .. ':' .. f.stage end
  return f.status
end

-- The counter moves of this call, written once by `finish`: a move and its reverse in one call
-- (the lease a hand-off ends and the one it grants, a heartbeat) write nothing, and a batch
-- writes each counter it moved once instead of once per task.
local moves = {}
local function count(f, delta)
  local c = ctr(f)
  moves[c] = (moves[c] or 0) + delta
end

-- Writes the counter moves; every script that indexes or unindexes a task returns through it.
-- A counter that reaches 0 is removed, so a job whose tasks are all deleted leaves no counters
-- hash behind (Redis drops an empty hash); a missing counter reads as 0.
local function finish(reply)
  for c, n in pairs(moves) do
    if n ~= 0 and redis.call('HINCRBY', B .. 'c', c, n) == 0 then
      redis.call('HDEL', B .. 'c', c)
    end
  end
  moves = {}
  return reply
end

-- Removes `m` from one queue pair: a queued entry is in exactly one of the pair's ready and
-- delayed sets (promotion moves it within its pair, without touching the task's hash, so the
-- hash cannot say which). The likelier set is tried first and the other only on a miss, which
-- saves a Redis call per pair on the hot paths.
local function dequeue(ready, delayed, m, ready_first)
  local first, second = delayed, ready
  if ready_first then first, second = ready, delayed end
  if redis.call('ZREM', first, m) == 0 then redis.call('ZREM', second, m) end
end

-- What `unindex` needs of a task as loaded, kept before the script changes it.
local function prior(f)
  return { status = f.status, stage = f.stage, updated = f.updated, qm = f.qm, qx = f.qx }
end

-- Removes a task (as it was) from every index and counter (counted by `finish`). `ready_first` when the caller found
-- it in a ready set (claim_next); otherwise the delayed set is tried first, which is where an
-- in_progress task's lease waits for its expiry (succeed, fail, heartbeat).
local function unindex(id, f, ready_first)
  count(f, -1)
  -- A task claim_head set aside and that was since repaired: this write brings it back.
  if f.qx then redis.call('ZREM', B .. 'x', id) end
  redis.call('ZREM', B .. 's:' .. f.status, lmember(f, id))
  if f.qm then
    dequeue(B .. 'r', B .. 'd', f.qm, ready_first)
    if f.stage then dequeue(B .. 'r:' .. f.stage, B .. 'd:' .. f.stage, f.qm, ready_first) end
  end
end

-- Adds a task (as it is now) to its indexes and counter (counted by `finish`); sets f.qm and
-- drops the set-aside marker f.qx (the caller writes both).
-- Claimable tasks go to the ready set if claimable at `now` (its updated_at: every write is
-- stamped with the request's `now`), else to the delayed set scored by claimable_at.
local function index(id, f)
  count(f, 1)
  f.qx = nil
  redis.call('ZADD', B .. 's:' .. f.status, 0, lmember(f, id))
  local at = claimable_at(f)
  if at == nil then
    f.qm = nil
    return
  end
  f.qm = qmember(f, id, at)
  if at <= tonumber(f.updated) then
    redis.call('ZADD', B .. 'r', 0, f.qm)
    if f.stage then redis.call('ZADD', B .. 'r:' .. f.stage, 0, f.qm) end
  else
    redis.call('ZADD', B .. 'd', at, f.qm)
    if f.stage then redis.call('ZADD', B .. 'd:' .. f.stage, at, f.qm) end
  end
end

-- Writes a task's hash. With `orig` (the fields as loaded), only what changed is written and
-- what was dropped is deleted, so a claim does not rewrite the task's data and history.
local function store(id, f, orig)
  local k = tkey(id)
  local set, gone = {}, {}
  for name, value in pairs(f) do
    if orig == nil or orig[name] ~= value then
      set[#set + 1] = name
      set[#set + 1] = value
    end
  end
  if orig then
    for name in pairs(orig) do
      if f[name] == nil then gone[#gone + 1] = name end
    end
  end
  if #gone > 0 then redis.call('HDEL', k, unpack(gone)) end
  if #set > 0 then redis.call('HSET', k, unpack(set)) end
end

-- A shallow copy of a task's fields, to write only the difference later.
local function snapshot(f)
  local c = fields()
  for name, value in pairs(f) do c[name] = value end
  return c
end

local function flatten(f)
  local out = {}
  for name, value in pairs(f) do
    out[#out + 1] = name
    out[#out + 1] = value
  end
  return out
end

-- A day number (since 1970-01-01) as YYYY-MM-DD: days-from-civil, inverted. Memoized, since the
-- timestamps one call formats share their day.
local date_day, date_text
local function civil_date(days)
  if days == date_day then return date_text end
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp + 3
  if m > 12 then m = m - 12 end
  if m <= 2 then y = y + 1 end
  date_day, date_text = days, string.format('%04d-%02d-%02d', y, m, d)
  return date_text
end

-- Timestamp's Display: RFC 3339 UTC with milliseconds.
local function iso(ms)
  ms = tonumber(ms)
  local secs = math.floor(ms / 1000)
  local milli = ms - secs * 1000
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  return string.format('%sT%02d:%02d:%02d.%03dZ', civil_date(days),
    math.floor(rem / 3600), math.floor((rem % 3600) / 60), rem % 60, milli)
end

-- lifecycle::record: appends an Attempt (serde JSON of model::Attempt) and keeps the newest 20
-- (HISTORY_LIMIT). History is stored as one JSON document per line. The attempt number is
-- written from its value, not spliced as stored: `check` lets '+3' and '007' through (Rust
-- reads them), which are not JSON numbers and would leave the history unreadable.
local function record(f, outcome, error_json, now)
  local worker, started = 'admin', now
  if f.owner then worker, started = f.owner, f.acq end
  local stage = 'null'
  if f.stage then stage = cjson.encode(f.stage) end
  local entry = '{"attempt":' .. digits(tonumber(f.attempts)) .. ',"stage":' .. stage .. ',"worker":' .. cjson.encode(worker)
    .. ',"started":"' .. iso(started) .. '","finished":"' .. iso(now) .. '","outcome":"' .. outcome
    .. '","error":' .. (error_json or 'null') .. '}'
  local h = f.history
  if h and h ~= '' then h = h .. '\n' .. entry else h = entry end
  local n, at = 1, string.find(h, '\n', 1, true)
  while at do
    n = n + 1
    at = string.find(h, '\n', at + 1, true)
  end
  while n > 20 do
    h = string.sub(h, string.find(h, '\n', 1, true) + 1)
    n = n - 1
  end
  f.history = h
end

-- lifecycle::touch: every write bumps the version and updated_at.
local function touch(f, now)
  f.version = digits(tonumber(f.version) + 1)
  f.updated = digits(now)
end

-- lifecycle::check_fence: a lease holds the task by its token and its acquisition instant
-- (`<token>:<ms>`, sent by the client as one argument), so the lease of a deleted task does not
-- hold a task created again under its id, whose tokens restart.
local function fence(f)
  return (f.ltoken or '') .. ':' .. (f.acq or '')
end

local function drop_lease(f)
  f.owner, f.ltoken, f.acq, f.exp = nil, nil, nil, nil
end

-- The stage after `f.stage` in the task's pipeline, or nil (last stage, or no pipeline); false
-- when `stages` is not a JSON list of stage names (a corrupt task: nothing is written).
local function next_stage(f)
  if not f.stage then return nil end
  local ok, stages = pcall(cjson.decode, f.stages or '')
  if not ok or type(stages) ~= 'table' then return false end
  local found, nxt = false, nil
  for i, s in ipairs(stages) do
    if type(s) ~= 'string' then return false end
    if not found and s == f.stage then found, nxt = true, stages[i + 1] end
  end
  return nxt
end

-- Store::succeed for one lease: lifecycle::check_fence then lifecycle::succeed (record the
-- attempt, drop the lease, clear the error, write the output; next pipeline stage, pending and
-- claimable at once, or `succeeded`). Returns the task's new fields, 0 for a stale lease, or
-- `corrupt`'s text for a task that fails `check` (in both cases nothing is written).
local function succeed_lease(id, lease_fence, output, now)
  local f = load(id)
  if f == nil then return 0 end
  local bad = check(f)
  if bad then return corrupt(id, f, bad) end
  if f.status ~= 'in_progress' or fence(f) ~= lease_fence then return 0 end
  local nxt = next_stage(f)
  if nxt == false then return corrupt(id, f, 'stages') end
  local old = prior(f)
  local orig = snapshot(f)
  record(f, 'succeeded', nil, now)
  drop_lease(f)
  f.error = nil
  f.output = output
  if nxt then
    f.stage = nxt
    f.status = 'pending'
    f.attempts = '0'
    f.nb = nil
    f.started = nil
  else
    f.status = 'succeeded'
    f.finished = digits(now)
  end
  touch(f, now)
  unindex(id, old)
  index(id, f)
  store(id, f, orig)
  return flatten(f)
end

-- Takes a corrupt task's entry `m` out of the job's queues (the one claim_head found it in, and
-- the job's and the task's stage's ready and delayed sets) into the job's set-aside set `x`
-- (member: the id, score: `now`), and names the failing field in the task's `qx`. The task
-- keeps its status, counter and listing entry: it is not lost, it just stops blocking the
-- queue. Repaired by hand, it comes back with its next write through the store (`unindex`).
local function set_aside(id, f, m, field, r, now)
  redis.call('ZREM', r, m)
  dequeue(B .. 'r', B .. 'd', m, true)
  if f.stage then dequeue(B .. 'r:' .. f.stage, B .. 'd:' .. f.stage, m, true) end
  redis.call('ZADD', B .. 'x', now, id)
  redis.call('HSET', tkey(id), 'qx', field)
  redis.log(redis.LOG_WARNING, 'tasktrack: set aside corrupt task ' .. tkey(id) .. ': ' .. field)
end

-- Store::claim_next: lifecycle::claim (grant, and expire for a lapsed lease) applied to the head
-- of the job's ready queue (of `stage`'s, unless it is ''), up to `limit` tasks.
--
-- A head entry whose task fails `check` is set aside (`set_aside`) before anything is written
-- for it, and the claim goes on with the next entry: one corrupt task never stops a job, and
-- never makes a call fail halfway (which would keep the tasks it already claimed in_progress
-- without returning them, and lose its counter moves).
--
-- Queues per job (and per job and stage): `r` holds tasks claimable now, ordered by member bytes
-- (priority descending, claimable_at, id); `d` holds tasks claimable later (retry backoff,
-- not_before, and every live lease by its expiry), scored by that instant. Due entries of `d`
-- are promoted to `r` first, so an expired lease is reclaimed by the same script that claims.
-- Returns {id, fields...} per granted task; a lapsed lease at max_attempts is exhausted, not
-- granted, and not returned.
local function claim_head(owner, lease_ms, limit, now, stage)
  local r, d = B .. 'r', B .. 'd'
  if stage ~= '' then r, d = r .. ':' .. stage, d .. ':' .. stage end

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
  local skip, aside = 0, 0
  while #out < limit and skip < 100 and aside < 100 do
    local heads = redis.call('ZRANGE', r, skip, skip + (limit - #out) - 1)
    if #heads == 0 then break end
    for _, m in ipairs(heads) do
      if #out >= limit then break end
      local id = string.sub(m, 21)
      local f = load(id)
      local bad
      if f ~= nil and (f.qm == m or f.qm == nil) then
        bad = check(f)
        -- Every write indexes a claimable task with its member: one without is corrupt.
        if not bad and f.qm == nil and claimable_at(f) ~= nil then bad = 'qm' end
      end
      if bad then
        set_aside(id, f, m, bad, r, now)
        aside = aside + 1
      elseif f == nil or f.qm ~= m then
        -- An entry no task owns any more (cannot happen while every write goes through these
        -- scripts); drop it rather than loop on it.
        redis.call('ZREM', r, m)
      else
        local at = claimable_at(f)
        if at ~= nil and at > now then
          -- Promoted by a caller whose clock runs ahead of ours: not claimable at our `now`.
          -- Back to the delayed set, where its time orders it, so that many such entries at
          -- the head cannot hide the claimable ones behind them (skipping them would, past
          -- the skip cap); the next caller whose `now` has reached it promotes it again.
          redis.call('ZREM', r, m)
          redis.call('ZADD', d, at, m)
        elseif at == nil then
          skip = skip + 1
        else
          local old = prior(f)
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
              f.finished = digits(now)
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
            f.attempts = digits(tonumber(f.attempts) + 1)
            f.token = digits(tonumber(f.token) + 1)
            f.nb = nil
            f.started = digits(now)
            f.finished = nil
            f.owner = owner
            f.ltoken = f.token
            f.acq = digits(now)
            f.exp = digits(expiry(now, lease_ms))
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
end
