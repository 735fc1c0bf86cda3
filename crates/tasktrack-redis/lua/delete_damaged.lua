-- Documents::delete_damaged: deletes a task whose hash no longer decodes (get_task answered
-- Corrupt), whatever its lease says, with its queue, listing and set-aside entries and its
-- counter, in one atomic step. No revision is compared: a damaged record has none the caller
-- could have read. ARGV: id. Returns 1, or 0 when there is no task hash at `id`.
--
-- The hash is damaged, so no field is trusted blindly: each is used only where a wrong value
-- can do no harm (a ZREM of a member that is not there) or after the check `check` applies to
-- it, so the script cannot fail halfway (Redis would keep the writes made before the failure).
local id = ARGV[1]

-- The glob pattern (ZSCAN MATCH) of a listing member of `id`: the 12 characters of its time
-- (`time12`), then the id with the glob's special characters escaped, as a task id may hold any
-- of them.
local listing_pattern = '????????????' .. string.gsub(id, '[%*%?%[%]\\]', '\\%0')

-- Removes every member of the listing set of `status` that is an entry of `id`; whether there
-- was one. A full scan of the set: time in proportion to the job's tasks in that status, during
-- which the server runs nothing else (a script runs alone; over a second per million entries on
-- the 2-core test machine). Only taken when `updated` cannot name the entry (`unlist`).
local function unlist_scan(status)
  local key, cursor, found = B .. 's:' .. status, '0', false
  repeat
    local page = redis.call('ZSCAN', key, cursor, 'MATCH', listing_pattern, 'COUNT', 1000)
    cursor = page[1]
    for i = 1, #page[2], 2 do
      redis.call('ZREM', key, page[2][i])
      found = true
    end
  until cursor == '0'
  return found
end

-- Removes the listing entry `updated` names (`lmember`) from the first listing set that holds
-- it, the set of the hash's own status first; that status, or nil. The member is the same in
-- every set, so a status edited by hand (into another, or into one nobody knows) costs at most
-- one ZREM per status, O(log n) each, and no scan.
local function unlist_named(f)
  local m = lmember(f, id)
  if STATUSES[f.status] and redis.call('ZREM', B .. 's:' .. f.status, m) == 1 then
    return f.status
  end
  for status in pairs(STATUSES) do
    if status ~= f.status and redis.call('ZREM', B .. 's:' .. status, m) == 1 then return status end
  end
  return nil
end

-- Removes the task's listing entry; returns the status it was listed (and so counted) under,
-- or nil if it is listed nowhere. `index` lists and counts a task under the same status, so
-- the set that held the entry names the counter to move even when the hash's status was
-- edited. The entry is named by `updated` when it reads (`unlist_named`); only when it does not,
-- or names no entry (an edited value), is every listing set of the job scanned for the id: the
-- hash is the only other place that held the entry's time.
local function unlist(f)
  if not bad_s(f.updated) then
    local listed = unlist_named(f)
    if listed then return listed end
  end
  local listed = nil
  for status in pairs(STATUSES) do
    if unlist_scan(status) and listed == nil then listed = status end
  end
  return listed
end

local f = load(id)
if f == nil then return 0 end
local listed = unlist(f)
if listed == nil and STATUSES[f.status] then listed = f.status end
-- Counted under its listed status (and its stage, as `ctr` names the counter).
if listed then count({ status = listed, stage = f.stage }, -1) end
-- Its claim-queue entries, named by `qm` (claim_head drops an entry whose task is gone, should
-- `qm` itself be lost), and its entry in the set-aside set, if a claim put it there.
if f.qm then
  dequeue(B .. 'r', B .. 'd', f.qm, false)
  if f.stage then dequeue(B .. 'r:' .. f.stage, B .. 'd:' .. f.stage, f.qm, false) end
end
redis.call('ZREM', B .. 'x', id)
redis.call('DEL', tkey(id))
return finish(1)
