-- forget_rep_log: drop the rep log's entries older than the retention. Only reps whose oldest entry
-- is older are visited (rep log oldest), each one BYLEX range removal, then dated by its new oldest
-- entry or left out once it has none.
-- KEYS: the shared fixed keys (lib.lua); only the rep log and its oldest index are touched.
-- ARGV: retention in ms, the most reps to visit in this call (a bound on how long it blocks Redis).
-- Returns {reps visited, entries dropped}.
local cutoff = now_ms() - tonumber(ARGV[1])
local reps = redis.call('ZRANGE', KEYS[K_REP_OLDEST], '-inf', '(' .. cutoff, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
local dropped = 0
for _, rep in ipairs(reps) do
    -- Times are 16 digits wide, so "rep|<cutoff>" sorts after exactly the entries older than it.
    dropped = dropped + redis.call('ZREMRANGEBYLEX', KEYS[K_REP_LOG], '[' .. rep .. '|',
                                   string.format('(%s|%016d', rep, cutoff * 1000))
    local head = redis.call('ZRANGE', KEYS[K_REP_LOG], '[' .. rep .. '|', '(' .. rep .. '}', 'BYLEX', 'LIMIT', 0, 1)[1]
    if head then
        redis.call('ZADD', KEYS[K_REP_OLDEST], math.floor(tonumber(string.match(head, '^[^|]*|(%d+)|')) / 1000), rep)
    else
        redis.call('ZREM', KEYS[K_REP_OLDEST], rep)
    end
end
return {#reps, dropped}
