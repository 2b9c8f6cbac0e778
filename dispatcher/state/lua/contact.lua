-- contact: the rep holding a lead says it has contacted the customer (or a supervisor says so for
-- it). Recorded once; it stops the queue's first-contact clock (the lead's `due` entry).
-- KEYS: the shared layout (lib.lua), all channels.
-- ARGV: the shared layout, then lead id, actor ('' when unnamed), the rep the lead must be assigned
--       to ('' for anyone: a rep's own token records contact only for its own leads).
-- Returns {'refused', 'not_found' | 'forbidden' | 'conflict', message} | {'ok', words, ms since assigned}
local ctx = parse_context()
local lead_id, actor, only_rep = ARGV[ctx.argi], ARGV[ctx.argi + 1], ARGV[ctx.argi + 2]

local record, refusal = assigned_to(lead_id, only_rep, 'is contacted')
if not record then return refusal end
if record.contacted_at then
    return {'ok', 'already contacted', record.contacted_at - record.assigned_at}
end
local within = ctx.now - record.assigned_at
record.contacted_at = ctx.now
redis.call('ZREM', KEYS[K_DUE], lead_id)
add_history(record, ctx.now, 'contacted', {rep_id = record.rep_id, by = actor ~= '' and actor or nil})
save_record(record)
emit('lead-events', lead_id, 'value', cjson.encode({type = 'lead_contacted', lead_id = lead_id, rep_id = record.rep_id,
                                                    within_ms = within, by = actor ~= '' and actor or nil}))
return {'ok', 'contacted', within}
