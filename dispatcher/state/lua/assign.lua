-- assign: decide one lead. A returning customer of a sticky queue goes back to its last rep if
-- that rep can take it now, or is held for it for the queue's wait (lib.lua, decide); otherwise
-- takes the best rep of the lead's queue that every filter lets through, reserves a unit of its
-- capacity and records the decision, all in this one atomic step; when no rep can take it, the
-- lead waits in the queue's wait set for its channel.
-- KEYS: the shared layout (lib.lua), built for the lead's channel only.
-- ARGV: the shared layout, then lead id, lead JSON (validated), source (where this delivery came
--       from, e.g. "leads/2@1041"), queue name, the rule that chose it ("rule 2 (big accounts)",
--       "default"), its customer for a sticky queue ("customer_id=c-42", "" for none).
-- Returns {kind, status, assignment?}: kind is 'new', 'replay' (same source seen again: a
-- redelivery after a crash, whose event the caller announces again) or 'duplicate' (the id was
-- already decided from another source: nothing changes). The caller announces the assignment
-- (reserve writes no outbox event for it; lib.lua says why).
local ctx = parse_context()
local lead_id, lead_json, source, queue_name = ARGV[ctx.argi], ARGV[ctx.argi + 1], ARGV[ctx.argi + 2], ARGV[ctx.argi + 3]
local rule, sticky_key = ARGV[ctx.argi + 4], ARGV[ctx.argi + 5]

local record = load_record(lead_id)
if record and record.status ~= 'pending' then
    local kind = record.source == source and 'replay' or 'duplicate'
    if record.status == 'assigned' then
        return {kind, record.status, {record.id, record.rep_id, record.queue, record.strategy,
                                      record.assigned_at, cjson.encode(record.facts), record.accepted_at}}
    end
    return {kind, record.status}
end
if not record then
    record = {id = lead_id, accepted_at = ctx.now, history = {}}
    add_history(record, ctx.now, 'accepted', {})
end
with_body(record, lead_json)
record.source = source
record.rule = rule

if sticky_key ~= '' then record.sticky_key = sticky_key end

ctx.announced_by_caller = true
local assignment = decide(ctx, record, ctx.by_name[queue_name], {priority = record.lead.priority})
if assignment then return {'new', 'assigned', assignment} end
return {'new', record.status}
