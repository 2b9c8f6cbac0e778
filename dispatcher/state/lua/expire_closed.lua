-- expire_closed: forget leads closed longer ago than the retention. Their whole record went to the
-- lead-events topic when they closed (close.lua), so Redis holds only open work and recent history.
-- A lead id forgotten here is new again if it is ever sent once more, and so is its customer: the
-- customer's owner entry goes with the lead that made that rep its owner (a later lead of the
-- customer has written its own entry over it, which stays), so `owners` does not grow forever.
-- KEYS: the shared fixed keys (lib.lua); only the lead records, the closed set and owners are touched.
-- ARGV: retention in ms, the most leads to forget in this call (a bound on how long it blocks Redis).
-- Returns the number of leads forgotten.
local cutoff = now_ms() - tonumber(ARGV[1])
local due = redis.call('ZRANGE', KEYS[K_CLOSED], '-inf', cutoff, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
for i = 1, #due, 500 do
    local part = {unpack(due, i, math.min(i + 499, #due))}
    for _, raw in ipairs(redis.call('HMGET', KEYS[K_LEADS], unpack(part))) do
        local record = raw and cjson.decode(raw)
        local owner = record and record.sticky_key and redis.call('HGET', KEYS[K_OWNERS], record.sticky_key)
        if owner and string.match(owner, '|(.*)$') == record.id then
            redis.call('HDEL', KEYS[K_OWNERS], record.sticky_key)
        end
    end
    redis.call('HDEL', KEYS[K_LEADS], unpack(part))
    redis.call('ZREM', KEYS[K_CLOSED], unpack(part))
end
return #due
