-- close: end a lead. Frees the rep's unit at once and hands it the best waiting lead it may take.
-- Closing twice changes nothing, so a retried close can never leak capacity. The closed lead's
-- whole record goes to the lead-events topic (through the outbox) and is dated in the closed set,
-- from which expire_closed removes it after the retention. A close of an assigned lead counts
-- toward its rep's conversion (outcomes; lib.lua's record_outcome).
-- KEYS: the shared layout (lib.lua), all channels.
-- ARGV: the shared layout, then lead id, outcome, actor (who closed it; '' when unnamed), the rep the
--       lead must be assigned to ('' for anyone: a rep's own token closes only its own leads).
-- Returns {'unknown'} | {'not_theirs', rep id or ''} | {'already_closed', outcome}
--         | {'closed', previous status, rep id or '', drained assignments}
local ctx = parse_context()
local lead_id, outcome, actor, only_rep = ARGV[ctx.argi], ARGV[ctx.argi + 1], ARGV[ctx.argi + 2], ARGV[ctx.argi + 3]

local record = load_record(lead_id)
if not record then return {'unknown'} end
-- Checked here, in the step itself: a lead moved to another rep just before cannot be closed by the
-- rep it left.
if only_rep ~= '' and (record.status ~= 'assigned' or record.rep_id ~= only_rep) then
    return {'not_theirs', record.status == 'assigned' and record.rep_id or ''}
end
if record.status == 'closed' then return {'already_closed', record.outcome} end

local previous = record.status
local rep = (previous == 'assigned' or previous == 'offered') and record.rep_id or nil
if rep then
    release(ctx, rep, record.bucket, lead_id)
    -- An offer never answered is no outcome of the rep's.
    if previous == 'assigned' then record_outcome(ctx, rep, outcome) end
    redis.call('ZREM', KEYS[K_DUE], lead_id)
    record.offered_at, record.offer_until, record.offer_event = nil, nil, nil
elseif previous == 'queued' or previous == 'pooled' then
    unwait(ctx, record)
end
record.status = 'closed'
record.outcome = outcome
record.closed_at = ctx.now
add_history(record, ctx.now, 'closed', {outcome = outcome, by = actor ~= '' and actor or nil})
save_record(record)
redis.call('ZADD', KEYS[K_CLOSED], ctx.now, lead_id)
emit('rep-events', rep or '', 'value', cjson.encode({type = 'lead_closed', rep_id = rep or '', lead_id = lead_id,
                                                    outcome = outcome, by = actor ~= '' and actor or nil}))
-- The body goes out as it came, beside the record (lib.lua, with_body).
local body = record.body
record.body = nil
emit('lead-events', lead_id, 'value', string.format('{"type":"lead_closed","lead":%s,"body":%s}',
                                                    cjson.encode(record), body or 'null'))

local drained = {}
if rep then drain_rep(ctx, rep, drained) end
return {'closed', previous, rep or '', drained}
