-- reject_offer: the rep a lead is offered to turns it down. Its unit comes back, the lead is
-- decided again in its queue for anyone but the reps that let it go (kept on the record), and the
-- rep, having room again, takes the best waiting lead it has not let go. A rejection answers the
-- offer, so it ends the rep's run of offer timeouts.
-- KEYS: the shared layout (lib.lua), all channels.
-- ARGV: the shared layout, then lead id, the rep rejecting ('' for a supervisor rejecting for the
--       rep it is offered to), actor (who rejected; '' when unnamed).
-- Returns {'refused', 'not_found' | 'conflict', message} | {'ok', status now, assignments}
local ctx = parse_context()
local lead_id, rep, actor = ARGV[ctx.argi], ARGV[ctx.argi + 1], ARGV[ctx.argi + 2]

local record, refusal = offered_to(lead_id, rep)
if not record then return refusal end

local from = record.rep_id
redis.call('HDEL', KEYS[K_OFFER_TIMEOUTS], from)
local assignments = {}
assignments[#assignments + 1] = return_offer(ctx, record, 'rejected', {by = actor ~= '' and actor or nil})
drain_rep(ctx, from, assignments)
return {'ok', record.status, assignments}
