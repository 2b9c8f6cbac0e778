-- claim: a rep takes a lead from its queue's claim pool. Atomic, so of any number of claims for one
-- lead exactly one wins; the winner must be a member of the queue that can take the lead now (the
-- queue strategy's filters: channel, skills, presence, room) and, when the queue limits claims, have
-- claimed fewer than that many of its leads in the last hour. Otherwise nothing changes.
-- KEYS: the shared layout (lib.lua), all channels.
-- ARGV: the shared layout, then lead id, rep id, actor (who claimed; '' when unnamed).
-- Returns {'refused', 'not_found' | 'conflict' | 'unprocessable', message} | {'ok', assignment}
--   unprocessable: the rep can never take this lead (not a member, no such channel, a skill missing).
local ctx = parse_context()
local lead_id, rep, actor = ARGV[ctx.argi], ARGV[ctx.argi + 1], ARGV[ctx.argi + 2]

local record = load_record(lead_id)
if not record then return {'refused', 'not_found', 'unknown lead ' .. lead_id} end
if redis.call('HEXISTS', KEYS[K_PROFILES], rep) == 0 then return {'refused', 'not_found', 'unknown rep ' .. rep} end
if record.status ~= 'pooled' then
    return {'refused', 'conflict', string.format('lead %s is %s, no longer in a pool: someone else took it first, '
                                                 .. 'or it was never pooled', lead_id, record.status)}
end
local q = ctx.by_name[record.queue]
local bucket, facts, lasting = rep_can_take(ctx, q, rep, record)
if not bucket then
    return {'refused', lasting and 'unprocessable' or 'conflict',
            string.format('rep %s cannot claim lead %s from queue %s: it %s', rep, lead_id, q.name, facts)}
end
local prefix = rep .. '|' .. q.name .. '|'
if q.claims_per_hour > 0 then
    local since = string.format('%014d', ctx.now - 3600000)
    -- Claims older than the hour no longer count: dropped here, so a rep keeps at most the limit.
    redis.call('ZREMRANGEBYLEX', KEYS[K_CLAIMS], '[' .. prefix, '(' .. prefix .. since)
    -- '}' sorts after '|' and after every character of a name: the end of this rep's range in the queue.
    local claimed = redis.call('ZLEXCOUNT', KEYS[K_CLAIMS], '[' .. prefix .. since, '(' .. rep .. '|' .. q.name .. '}')
    if claimed >= q.claims_per_hour then
        return {'refused', 'conflict', string.format('rep %s has claimed %d leads from the pool of queue %s in the '
                                                     .. 'last hour, its limit', rep, claimed, q.name)}
    end
    redis.call('ZADD', KEYS[K_CLAIMS], 0, prefix .. string.format('%014d', ctx.now) .. '|' .. lead_id)
end
local pooled_ms = ctx.now - (record.pooled_at or ctx.now)
unwait(ctx, record)
local assignment = reserve(ctx, record, q, rep, bucket, 'claimed',
    {claimed_by = rep, pool_queue = q.name, pooled_ms = pooled_ms, priority = record.lead.priority}, facts,
    actor ~= '' and actor or nil)
return {'ok', assignment}
