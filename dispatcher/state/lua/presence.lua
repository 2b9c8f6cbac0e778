-- presence: a rep's status and heartbeat. Coming online (or staying online) puts the rep into the
-- ready index of each of its queues and drains waiting leads to it; away or offline takes it out
-- of every index at once, so nothing more is routed to it, and gives back every offer it has not
-- answered, each decided again for someone else in this step (nobody waits out an offer to a rep
-- who has left).
-- KEYS: the shared layout (lib.lua), all channels.
-- ARGV: the shared layout, then rep id, status ('online' | 'away' | 'offline'), actor ('' when unnamed).
-- A change of status goes to rep-events through the outbox; a heartbeat that changes nothing does not.
-- Returns {'unknown'} | {'ok', previous status, drained or re-decided assignments}
local ctx = parse_context()
local rep, status, actor = ARGV[ctx.argi], ARGV[ctx.argi + 1], ARGV[ctx.argi + 2]

if redis.call('HEXISTS', KEYS[K_PROFILES], rep) == 0 then return {'unknown'} end

local assignments = {}
-- Read before the heartbeat refreshes it: a rep whose heartbeats had lapsed was offline.
local previous = set_status(ctx, rep, status, actor)
redis.call('ZADD', KEYS[K_SEEN], ctx.now, rep)
if status == 'online' then
    index_rep_everywhere(ctx, rep)
    drain_rep(ctx, rep, assignments)
else
    return_offers_of(ctx, rep, 'offer_returned', {why = 'went ' .. status}, assignments)
end
return {'ok', previous, assignments}
