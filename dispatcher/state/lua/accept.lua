-- accept: record a lead as pending the moment it is accepted over HTTP, so it can be looked up
-- before a worker routes it. An id seen before is left exactly as it is. Its history entry goes to
-- lead-events with the lead's decision (assign.lua), which always follows: the lead is on `leads`.
-- KEYS: the shared fixed keys (lib.lua); only KEYS[1], the lead records, is touched.
-- ARGV: lead id, lead JSON (validated).
-- Returns 'new', or the status of the lead already known by that id.
local known = redis.call('HGET', KEYS[K_LEADS], ARGV[1])
if known then return cjson.decode(known).status end
local now = now_ms()
local record = {id = ARGV[1], status = 'pending', accepted_at = now, history = {}}
announced_by_caller = true
add_history(record, now, 'accepted', {})
with_body(record, ARGV[2])
redis.call('HSET', KEYS[K_LEADS], ARGV[1], cjson.encode(record))
return 'new'
