-- accept_offer: the rep a lead is offered to takes it. The lead becomes assigned to that rep (the
-- unit reserved by the offer stays spent), its rep's run of offer timeouts ends, and the
-- assignment goes to `assignments` through the outbox (no Kafka offset stands behind an accept),
-- with the reason of the decision that offered it and `offered_at`. Only while the offer runs:
-- an accept at or after its end, or for a lead not offered to that rep, changes nothing.
-- KEYS: the shared layout (lib.lua), all channels.
-- ARGV: the shared layout, then lead id, the rep accepting ('' for a supervisor accepting for the
--       rep it is offered to), actor (who accepted; '' when unnamed).
-- Returns {'refused', 'not_found' | 'conflict', message} | {'ok', assignment}
local ctx = parse_context()
local lead_id, rep, actor = ARGV[ctx.argi], ARGV[ctx.argi + 1], ARGV[ctx.argi + 2]

local record, refusal = offered_to(lead_id, rep)
if not record then return refusal end
-- Checked against the offer's end, not against `due`: the due step may not have run yet.
if ctx.now >= record.offer_until then
    return {'refused', 'conflict', string.format('the offer of lead %s to rep %s ran out %d ms ago', lead_id,
                                                 record.rep_id, ctx.now - record.offer_until)}
end

redis.call('ZREM', KEYS[K_DUE], lead_id)
redis.call('HDEL', KEYS[K_OFFER_TIMEOUTS], record.rep_id)
record.facts.offered_at = record.offered_at
record.facts.offer_ms = ctx.now - record.offered_at
local event = record.offer_event
record.status = 'assigned'
record.assigned_at = ctx.now
record.offered_at, record.offer_until, record.offer_event = nil, nil, nil
add_history(record, ctx.now, 'accepted', {rep_id = record.rep_id, by = actor ~= '' and actor or nil})
save_record(record)
return {'ok', announce_assignment(ctx, record, event)}
