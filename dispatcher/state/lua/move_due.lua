-- move_due: take the leads whose time has come. A hold for a customer's last rep that ran out: the
-- queue's strategy decides the lead now (or it waits in the queue). An overflow that fell due: the
-- lead has waited its queue's overflow time with nobody free, so it leaves for the queue the
-- routing in force names, is decided there as a new decision, and may overflow again from there.
-- An offer that ran out: its unit comes back and the lead is decided again for someone else; a
-- rep that let the queue's away_after_timeouts offers in a row run out is set away in this step,
-- which returns its other offers too. An offer whose rep stopped sending heartbeats is returned
-- the same way; one whose rep is still there is looked at again at the earlier of its end and the
-- rep's presence expiry (lib.lua, offer_due_at).
-- Every worker runs this on a timer; the step is atomic and a lead taken leaves `due` in it, so
-- however many run at once, each lead moves once. Assignments leave through the outbox.
-- KEYS: the shared layout (lib.lua), all channels.
-- ARGV: the shared layout, then the most leads to take in this call.
-- Returns {assignments, holds ended, leads overflowed, due entries left for now, offers timed out or returned}
local ctx = parse_context()
local limit = tonumber(ARGV[ctx.argi])

local assignments, held_out, overflowed, offers_back = {}, 0, 0, 0

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

local due = redis.call('ZRANGE', KEYS[K_DUE], '-inf', ctx.now, 'BYSCORE', 'LIMIT', 0, limit)
for _, lead_id in ipairs(due) do
    redis.call('ZREM', KEYS[K_DUE], lead_id)
    local record = load_record(lead_id)
    local q = record and record.status == 'queued' and ctx.by_name[record.queue]
    -- Only an offered lead or a queued lead of a routed queue has anything due (close, reassign and
    -- routing changes take theirs out), so anything else is a leftover to drop.
    if record and record.status == 'offered' then
        offer_due(record)
    elseif q and record.held_for then
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
return {assignments, held_out, overflowed, redis.call('ZCOUNT', KEYS[K_DUE], '-inf', ctx.now), offers_back}
