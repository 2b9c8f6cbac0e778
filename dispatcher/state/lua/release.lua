-- release: the rep holding a lead hands it back (or a supervisor does for it). Its unit is given
-- back and goes to the rep's best waiting lead first, while this lead waits nowhere; then the lead
-- is decided again in its queue, never by a rep that has let it go (the record keeps them, so no
-- later re-route hands it back either). When nobody else can take it, it waits in its queue (or
-- goes to the pool of a pool queue).
-- KEYS: the shared layout (lib.lua), all channels.
-- ARGV: the shared layout, then lead id, reason (words), actor ('' when unnamed), the rep the lead
--       must be assigned to ('' for anyone: a rep's own token releases only its own leads), the
--       queue to use when the lead's own queue is no longer routed.
-- Returns {'refused', 'not_found' | 'forbidden' | 'conflict', message}
--         | {'ok', status, assignment or false, drained assignments}
local ctx = parse_context()
local lead_id, reason, actor, only_rep = ARGV[ctx.argi], ARGV[ctx.argi + 1], ARGV[ctx.argi + 2], ARGV[ctx.argi + 3]
local fallback_queue = ARGV[ctx.argi + 4]
local by = actor ~= '' and actor or nil

local record, refusal = assigned_to(lead_id, only_rep, 'can be released')
if not record then return refusal end
local q = ctx.by_name[record.queue] or ctx.by_name[fallback_queue]
if not q.ready[record.lead.channel] then
    return {'refused', 'conflict', string.format('lead %s is on channel %s, which the routing no longer has; '
                                                 .. 'close it instead', lead_id, record.lead.channel)}
end
local rep = record.rep_id
release(ctx, rep, record.bucket, lead_id)
local drained = {}
drain_rep(ctx, rep, drained)
add_let_go(record, rep)
add_history(record, ctx.now, 'released', {rep_id = rep, reason = reason, by = by})
emit('rep-events', rep, 'value', cjson.encode({type = 'lead_released', rep_id = rep, lead_id = lead_id,
                                               reason = reason, by = by}))
local assignment = decide(ctx, record, q, {priority = record.lead.priority, from_rep = rep, released = true}, 0)
return {'ok', record.status, assignment or false, drained}
