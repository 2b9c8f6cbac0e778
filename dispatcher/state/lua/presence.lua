-- presence: a rep's status and heartbeat. Coming online (or staying online) puts the rep into the
-- ready index of each of its queues and drains waiting leads to it; away or offline takes it out
-- of every index at once, so nothing more is routed to it.
-- KEYS: the shared layout (lib.lua), all channels.
-- ARGV: the shared layout, then rep id, status ('online' | 'away' | 'offline'), actor ('' when unnamed).
-- A change of status goes to rep-events through the outbox; a heartbeat that changes nothing does not.
-- Returns {'unknown'} | {'ok', previous status, drained assignments}
local ctx = parse_context()
local rep, status, actor = ARGV[ctx.argi], ARGV[ctx.argi + 1], ARGV[ctx.argi + 2]

if redis.call('HEXISTS', KEYS[K_PROFILES], rep) == 0 then return {'unknown'} end
local previous = redis.call('HGET', KEYS[K_STATUS], rep) or 'offline'
if previous == 'online' and not is_present(ctx, rep) then previous = 'offline' end

local drained = {}
redis.call('ZADD', KEYS[K_SEEN], ctx.now, rep)
if status == 'online' then
    redis.call('HSET', KEYS[K_STATUS], rep, status)
    index_rep_everywhere(ctx, rep)
    drain_rep(ctx, rep, drained)
else
    unindex_rep_everywhere(ctx, rep)
    redis.call('HSET', KEYS[K_STATUS], rep, status)
end
if previous ~= status then
    emit('rep-events', rep, 'value', cjson.encode({type = 'presence', rep_id = rep, status = status,
                                                   previous = previous, by = actor ~= '' and actor or nil}))
end
return {'ok', previous, drained}
