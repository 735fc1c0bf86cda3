-- Documents::replace_task: the compare-and-set write behind every slow path. The new record was
-- computed in Rust by the pure lifecycle rule; it is written only if the stored version is still
-- the one the rule read, and its indexes and counters move in the same step.
-- ARGV: id, expected revision (`<version>@<created>`, cas::task_revision: a task deleted and
-- created again under its id starts again at version 1), then field/value pairs. Returns 1, 0 on conflict, or an error
-- reply naming the field if the stored task became corrupt since it was read (nothing written).
-- A task claim_head set aside (`qx`) and repaired since comes back to its queue here.
local id = ARGV[1]
local old = load(id)
if old == nil then return 0 end
local bad = check(old)
if bad then return redis.error_reply(corrupt(id, old, bad)) end
if revision(old) ~= ARGV[2] then return 0 end
local f = {}
for i = 3, #ARGV, 2 do f[ARGV[i]] = ARGV[i + 1] end
unindex(id, old)
index(id, f)
store(id, f, old)
return finish(1)
