-- reassign: a supervisor moves a lead. With a rep id the lead goes to that rep if it is online and
-- has room (skills are the supervisor's call); without one it is routed again in its queue,
-- never back to the rep it leaves. The rep it leaves then drains its queues as after a close.
-- KEYS: the shared layout (lib.lua), all channels.
-- ARGV: the shared layout, then lead id, target rep id ('' to re-route), queue to use when the
--       lead's own queue is no longer routed, actor (who moved it; '' when unnamed).
-- Returns {'refused', 'not_found' | 'conflict', message} | {'ok', status, assignment or false, drained assignments}
local ctx = parse_context()
local lead_id, target, fallback_queue, actor = ARGV[ctx.argi], ARGV[ctx.argi + 1], ARGV[ctx.argi + 2], ARGV[ctx.argi + 3]
local by = actor ~= '' and actor or nil

local record = load_record(lead_id)
if not record then return {'refused', 'not_found', 'unknown lead ' .. lead_id} end
if record.status == 'closed' or record.status == 'pending' then
    return {'refused', 'conflict', string.format('lead %s is %s and cannot be reassigned', lead_id, record.status)}
end
local channel = record.lead.channel
if not ctx.by_name[fallback_queue].wait[channel] then
    return {'refused', 'conflict', string.format('lead %s is on channel %s, which the routing no longer has; close it instead',
                                                 lead_id, channel)}
end
local q = ctx.by_name[record.queue] or ctx.by_name[fallback_queue]
local old_rep = (record.status == 'assigned' or record.status == 'offered') and record.rep_id or nil
local target_bucket
if target ~= '' then
    if redis.call('HEXISTS', KEYS[K_PROFILES], target) == 0 then return {'refused', 'not_found', 'unknown rep ' .. target} end
    if target == old_rep then return {'refused', 'conflict', string.format('lead %s is already assigned to %s', lead_id, target)} end
    target_bucket = bucket_for(target, channel)
    if not target_bucket then return {'refused', 'conflict', string.format('rep %s takes no %s leads', target, channel)} end
    if not on_shift(target) then return {'refused', 'conflict', 'rep ' .. target .. ' ' .. off_shift_words(target)} end
    if not is_present(ctx, target) then return {'refused', 'conflict', string.format('rep %s is not online', target)} end
    local load, cap = load_and_cap(target, target_bucket)
    if load >= cap then
        return {'refused', 'conflict', string.format('rep %s is at capacity (%d of %d)', target, load, cap)}
    end
end

if old_rep then
    release(ctx, old_rep, record.bucket, lead_id)
    record.offered_at, record.offer_until, record.offer_event = nil, nil, nil
elseif record.status == 'queued' or record.status == 'pooled' then
    unwait(ctx, record)
end
record.reassigned = true

local assignment = false
local drained = {}
if target ~= '' then
    assignment = reserve(ctx, record, q, target, target_bucket, 'reassigned', {manual = true, from_rep = old_rep or cjson.null}, nil, by)
else
    -- Moved off a rep by a supervisor, the lead never goes back to it by itself: not now, nor by a
    -- drain or a claim later (only a supervisor naming that rep may give it back).
    if old_rep then add_let_go(record, old_rep) end
    local choice, why = pick_rep(ctx, q, channel, lead_skills(record), let_go_set(record))
    if choice then
        why.priority, why.from_rep = record.lead.priority, old_rep or cjson.null
        -- In a queue with offers the rep is offered it (nil: nothing assigned yet).
        assignment = reserve(ctx, record, q, choice.rep, choice.bucket, 'reassigned', why, choice.facts, by) or false
    else
        -- The rep it leaves drains first, so the lead cannot fall straight back to it.
        if old_rep then drain_rep(ctx, old_rep, drained) end
        park(ctx, record, q, by)
        return {'ok', record.status, assignment, drained}
    end
end
if old_rep then drain_rep(ctx, old_rep, drained) end
return {'ok', record.status, assignment, drained}
