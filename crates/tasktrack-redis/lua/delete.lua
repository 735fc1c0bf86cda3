-- Documents::delete_task: deletes the task if still at the expected version (the caller checked
-- lifecycle::check_delete on that version). ARGV: id, expected revision (`<version>@<created>`). Returns 1, 0, or an
-- error reply naming the field if the stored task became corrupt since it was read.
local id = ARGV[1]
local old = load(id)
if old == nil then return 0 end
local bad = check(old)
if bad then return redis.error_reply(corrupt(id, old, bad)) end
if revision(old) ~= ARGV[2] then return 0 end
unindex(id, old)
redis.call('DEL', tkey(id))
return finish(1)
