-- move_due: take the leads whose time has come. A hold for a customer's last rep that ran out: the
-- queue's strategy decides the lead now (or it waits in the queue). An overflow that fell due: the
-- lead has waited its queue's overflow time with nobody free, so it leaves for the queue the
-- routing in force names, is decided there as a new decision, and may overflow again from there.
-- Every worker runs this on a timer; the step is atomic and a lead taken leaves `due` in it, so
-- however many run at once, each lead moves once. Assignments leave through the outbox.
-- KEYS: the shared layout (lib.lua), all channels.
-- ARGV: the shared layout, then the most leads to take in this call.
-- Returns {assignments, holds ended, leads overflowed, due entries left for now}
local ctx = parse_context()
local limit = tonumber(ARGV[ctx.argi])

local assignments, held_out, overflowed = {}, 0, 0
local due = redis.call('ZRANGE', KEYS[K_DUE], '-inf', ctx.now, 'BYSCORE', 'LIMIT', 0, limit)
for _, lead_id in ipairs(due) do
    redis.call('ZREM', KEYS[K_DUE], lead_id)
    local record = load_record(lead_id)
    local q = record and record.status == 'queued' and ctx.by_name[record.queue]
    -- Only a queued lead of a routed queue has anything due (close, reassign and routing changes
    -- take theirs out), so anything else is a leftover to drop.
    if q and record.held_for then
        local owner = record.held_for
        local held_ms = ctx.now - record.held_since
        unwait(ctx, record)
        add_history(record, ctx.now, 'hold_ended', {rep_id = owner, queue = q.name})
        held_out = held_out + 1
        assignments[#assignments + 1] = decide(ctx, record, q, {priority = record.lead.priority}, held_ms)
    elseif q and q.overflow_ms > 0 then
        local at = (record.waiting_since or record.accepted_at) + q.overflow_ms
        if at > ctx.now then
            -- The routing in force gives this queue a longer overflow than when the lead came.
            redis.call('ZADD', KEYS[K_DUE], at, lead_id)
        else
            local target = ctx.by_name[q.overflow_to]
            local waited = ctx.now - (record.waiting_since or record.accepted_at)
            unwait(ctx, record)
            if type(record.overflowed) ~= 'table' then record.overflowed = {} end
            record.overflowed[#record.overflowed + 1] = {from = q.name, waited_ms = waited}
            add_history(record, ctx.now, 'overflowed', {from_queue = q.name, queue = target.name, waited_ms = waited})
            overflowed = overflowed + 1
            assignments[#assignments + 1] = decide(ctx, record, target, {priority = record.lead.priority}, 0)
        end
    end
end
return {assignments, held_out, overflowed, redis.call('ZCOUNT', KEYS[K_DUE], '-inf', ctx.now)}
