-- move_due: take the leads whose time has come. A hold for a customer's last rep that ran out: the
-- queue's strategy decides the lead now (or it waits in the queue). A lead that has waited its
-- queue's overflow time or pool time with nobody free, whichever falls due first: an overflow sends
-- it to the queue the routing in force names, decided there as a new decision (it may overflow
-- again from there); the pool time puts it into its queue's claim pool. An assigned lead whose rep
-- has not contacted it within its queue's SLA: the breach frees the rep's unit and the lead goes
-- where the queue's on_breach says (its pool, another rep of the queue, or the escalation queue).
-- An offer that ran out: its unit comes back and the lead is decided again for someone else; a
-- rep that let the queue's away_after_timeouts offers in a row run out is set away in this step,
-- which returns its other offers too. An offer whose rep stopped sending heartbeats is returned
-- the same way; one whose rep is still there is looked at again at the earlier of its end and the
-- rep's presence expiry (lib.lua, offer_due_at).
-- Every worker runs this on a timer; the step is atomic and a lead taken leaves `due` in it, so
-- however many run at once, each lead moves once. Assignments leave through the outbox.
-- KEYS: the shared layout (lib.lua), all channels.
-- ARGV: the shared layout, then the most leads to take in this call.
-- Returns {assignments, holds ended, leads overflowed, due entries left for now, offers timed out or
--          returned, leads pooled, breaches as "queue|rep" labels}
local ctx = parse_context()
local limit = tonumber(ARGV[ctx.argi])

local assignments, held_out, overflowed, offers_back, pooled, breaches = {}, 0, 0, 0, 0, {}

local function offer_due(record)
    local rep = record.rep_id
    if ctx.now >= record.offer_until then
        offers_back = offers_back + 1
        local q = ctx.by_name[record.queue]
        local in_a_row = redis.call('HINCRBY', KEYS[K_OFFER_TIMEOUTS], rep, 1)
        if q and q.away_after > 0 and in_a_row >= q.away_after then
            redis.call('HDEL', KEYS[K_OFFER_TIMEOUTS], rep)
            set_status(ctx, rep, 'away', 'offer timeouts')
            assignments[#assignments + 1] = return_offer(ctx, record, 'offer_timed_out', {in_a_row = in_a_row})
            return_offers_of(ctx, rep, 'offer_returned', {why = 'set away after ' .. in_a_row .. ' offer timeouts'},
                             assignments)
        else
            assignments[#assignments + 1] = return_offer(ctx, record, 'offer_timed_out', {in_a_row = in_a_row})
            drain_rep(ctx, rep, assignments)
        end
    elseif not is_present(ctx, rep) then
        offers_back = offers_back + 1
        assignments[#assignments + 1] = return_offer(ctx, record, 'offer_returned', {why = 'no heartbeat'})
    else
        redis.call('ZADD', KEYS[K_DUE], offer_due_at(ctx, record), record.id)
    end
end

local function breach(record, q)
    local rep, at = record.rep_id, record.assigned_at + q.sla_ms
    release(ctx, rep, record.bucket, record.id)
    -- The unit it freed goes to the rep's best waiting lead first, while this lead waits nowhere, so
    -- even when nobody else can take it, it does not fall straight back to the rep that let it lapse.
    drain_rep(ctx, rep, assignments)
    add_let_go(record, rep)
    local after_s = (ctx.now - record.assigned_at) / 1000
    local target = q
    if q.on_breach == 'escalate' and ctx.by_name[q.escalate_to] then target = ctx.by_name[q.escalate_to] end
    -- The history entry is the lead event supervisors hear of (lib.lua, add_history): the breach,
    -- and where the lead goes.
    add_history(record, ctx.now, 'sla_breached', {rep_id = rep, queue = q.name, after_s = after_s, deadline = at,
                                                  on_breach = q.on_breach, to_queue = target.name})
    breaches[#breaches + 1] = q.name .. '|' .. rep
    redis.call('HINCRBY', KEYS[K_BREACHES], q.name .. '|' .. rep, 1)
    local facts = {priority = record.lead.priority, from_rep = rep, sla_breached = true}
    if q.on_breach == 'pool' then
        to_pool(ctx, record, q, string.format('rep %s did not contact it within %g s', rep, q.sla_ms / 1000))
    else
        if target ~= q then facts.escalated_from = q.name end
        assignments[#assignments + 1] = decide(ctx, record, target, facts, 0)
    end
end

local due = redis.call('ZRANGE', KEYS[K_DUE], '-inf', ctx.now, 'BYSCORE', 'LIMIT', 0, limit)
for _, lead_id in ipairs(due) do
    redis.call('ZREM', KEYS[K_DUE], lead_id)
    local record = load_record(lead_id)
    local q = record and (record.status == 'queued' or record.status == 'assigned') and ctx.by_name[record.queue]
    -- Only an offered lead, a queued lead of a routed queue, or an assigned one of a queue with an SLA,
    -- has anything due (close, reassign, contact and routing changes take theirs out), so anything else is a leftover to drop.
    if record and record.status == 'offered' then
        offer_due(record)
    elseif q and record.status == 'assigned' then
        if q.sla_ms > 0 and not record.contacted_at then
            local at = record.assigned_at + q.sla_ms
            if at > ctx.now then
                -- The routing in force gives this queue a longer first-contact time than when it was assigned.
                redis.call('ZADD', KEYS[K_DUE], at, lead_id)
            else
                breach(record, q)
            end
        end
    elseif q and record.held_for then
        local owner = record.held_for
        local held_ms = ctx.now - record.held_since
        unwait(ctx, record)
        add_history(record, ctx.now, 'hold_ended', {rep_id = owner, queue = q.name})
        held_out = held_out + 1
        assignments[#assignments + 1] = decide(ctx, record, q, {priority = record.lead.priority}, held_ms)
    elseif q then
        local since = record.waiting_since or record.accepted_at
        local overflow_at = q.overflow_ms > 0 and since + q.overflow_ms or nil
        local pool_at = q.pool_ms > 0 and since + q.pool_ms or nil
        local waited = ctx.now - since
        if pool_at and pool_at <= ctx.now and (not overflow_at or pool_at <= overflow_at) then
            unwait(ctx, record)
            pooled = pooled + 1
            to_pool(ctx, record, q, string.format('nobody in queue %s took it within %g s', q.name, q.pool_ms / 1000))
        elseif overflow_at and overflow_at <= ctx.now then
            local target = ctx.by_name[q.overflow_to]
            unwait(ctx, record)
            if type(record.overflowed) ~= 'table' then record.overflowed = {} end
            record.overflowed[#record.overflowed + 1] = {from = q.name, waited_ms = waited}
            add_history(record, ctx.now, 'overflowed', {from_queue = q.name, queue = target.name, waited_ms = waited})
            overflowed = overflowed + 1
            assignments[#assignments + 1] = decide(ctx, record, target, {priority = record.lead.priority}, 0)
        elseif overflow_at or pool_at then
            -- The routing in force gives this queue longer times than when the lead came.
            redis.call('ZADD', KEYS[K_DUE], wait_due(q, record), lead_id)
        end
    end
end
return {assignments, held_out, overflowed, redis.call('ZCOUNT', KEYS[K_DUE], '-inf', ctx.now), offers_back, pooled,
        breaches}
