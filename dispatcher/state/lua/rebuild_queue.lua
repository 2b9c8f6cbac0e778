-- rebuild_queue: set a queue's members from scratch (after the routing file or the roster
-- changed) and rebuild its ready indexes from live state, then drain its waiting leads to members
-- with room. Runs once per queue per change, not per lead.
-- KEYS: the shared layout (lib.lua) with exactly this one queue, all channels.
-- ARGV: the shared layout, then the member rep ids.
-- Returns {'ok', member count, drained assignments}
local ctx = parse_context()
local q = ctx.queues[1]
redis.call('DEL', q.members, q.ready['*'])
for _, channel in ipairs(ctx.channels) do redis.call('DEL', q.ready[channel]) end
local members = {}
for i = ctx.argi, #ARGV do members[#members + 1] = ARGV[i] end
for i = 1, #members, 500 do
    redis.call('SADD', q.members, unpack(members, i, math.min(i + 499, #members)))
end
local drained = {}
for _, rep in ipairs(members) do
    index_rep_everywhere(ctx, rep)
    drain_rep(ctx, rep, drained)
end
return {'ok', #members, drained}
