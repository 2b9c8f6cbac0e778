-- apply_routing: replace the routing in force by a new one, in one atomic step that every worker
-- sees at once (each step checks the routing version it was built for; lib.lua). Rebuilds every
-- queue's members and ready indexes, routes again the leads waiting (or held for a rep) in queues
-- the new routing removes (recording why), dates the overflow of the leads waiting in queues whose
-- overflow changed by the new one, deletes what the old routing left behind, and drains waiting
-- leads to reps with room. Refused, changing nothing, when it cannot be applied safely.
-- KEYS: the shared layout (lib.lua) for the NEW routing, then: routing history;
--       for each removed queue: members, state, ready(*), then ready, wait, wait index per OLD channel, then pool;
--       for each queue kept but losing channels: ready, wait, wait index per dropped channel.
-- ARGV: the shared layout for the new routing, with ARGV[4] the version expected in force; then
--       new routing JSON, its text as written, fingerprint, source, actor, roster version the members
--       were computed from,
--       old channels (comma-separated), removed queue count R, R names, dropped-channel triple count T
--       and T labels ("queue|channel"),
--       per new queue: member count M and M rep ids, stranded lead count S and S (lead id, new queue) pairs
--       (the leads waiting in removed queues, then those held there), queues kept whose overflow or pool
--       time changed: count O and O names.
-- Cost: beyond the members, the leads waiting in removed queues and in queues whose overflow
-- changed, and every held lead (few: each waits for one rep for a short while).
-- Returns {'refused', reason, ...} | {'ok', new version, drained assignments, leads routed again}
local ctx = parse_context()
local a = ctx.argi
local spec, text, fingerprint, source = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
local actor, roster = ARGV[a + 4], ARGV[a + 5]
local old_channels = split(ARGV[a + 6], ',')
local removed_count = tonumber(ARGV[a + 7])
a = a + 8
local history_key = KEYS[ctx.keyi]
local k = ctx.keyi + 1

if (redis.call('GET', KEYS[K_ROSTER]) or '0') ~= roster then
    error({err = 'STALE_ROSTER a rep profile changed while the memberships were computed'})
end

local removed = {}
for i = 1, removed_count do
    local q = {name = ARGV[a + i - 1], members = KEYS[k], state = KEYS[k + 1], ready = {['*'] = KEYS[k + 2]},
               wait = {}, waitidx = {}}
    k = k + 3
    for _, channel in ipairs(old_channels) do
        q.ready[channel], q.wait[channel], q.waitidx[channel] = KEYS[k], KEYS[k + 1], KEYS[k + 2]
        k = k + 3
    end
    q.pool = KEYS[k]
    k = k + 1
    removed[#removed + 1] = q
    ctx.by_name[q.name] = ctx.by_name[q.name] or q
end
a = a + removed_count
local dropped = {}
local dropped_count = tonumber(ARGV[a])
for i = 1, dropped_count do
    local queue, channel = string.match(ARGV[a + i], '^(.*)|(.*)$')
    dropped[i] = {ready = KEYS[k], wait = KEYS[k + 1], waitidx = KEYS[k + 2], queue = 'queue ' .. queue, channel = channel}
    k = k + 3
end
a = a + dropped_count + 1

local members = {}
for i, q in ipairs(ctx.queues) do
    local count = tonumber(ARGV[a])
    members[i] = {}
    for j = 1, count do members[i][j] = ARGV[a + j] end
    a = a + count + 1
end
local stranded = {}
local stranded_count = tonumber(ARGV[a])
for i = 1, stranded_count do
    stranded[#stranded + 1] = {id = ARGV[a + 2 * i - 1], queue = ARGV[a + 2 * i]}
end
a = a + 2 * stranded_count + 1
local overflow_changed = {}
for i = 1, tonumber(ARGV[a]) do overflow_changed[i] = ctx.by_name[ARGV[a + i]] end

-- Refusals, before any write.
local reasons = {}
for _, triple in ipairs(dropped) do
    local waiting = redis.call('ZCARD', triple.wait)
    if waiting > 0 then
        reasons[#reasons + 1] = string.format('%s: %d %s on channel %s, which this routing drops; ' ..
            'let them be served or close them first, or keep the channel', triple.queue, waiting,
            waiting == 1 and 'lead waits' or 'leads wait', triple.channel)
    end
end
-- Pooled leads wait for a rep of their queue to claim them: a queue cannot go while any do.
for _, q in ipairs(removed) do
    local pooled = redis.call('ZCARD', q.pool)
    if pooled > 0 then
        reasons[#reasons + 1] = string.format('queue %s: %d %s in its claim pool; let reps claim them or close ' ..
            'them first, or keep the queue', q.name, pooled, pooled == 1 and 'lead waits' or 'leads wait')
    end
end
local waiting_in_removed = 0
for _, q in ipairs(removed) do
    for _, channel in ipairs(old_channels) do waiting_in_removed = waiting_in_removed + redis.call('ZCARD', q.wait[channel]) end
end
local removed_by_name, dropped_channel = {}, {}
for _, q in ipairs(removed) do removed_by_name[q.name] = q end
for _, triple in ipairs(dropped) do dropped_channel[triple.channel] = true end
for _, entry in ipairs(redis.call('ZRANGE', KEYS[K_HELD], 0, -1)) do
    local record = load_record(string.match(entry, '([^|]+)$'))
    if record and removed_by_name[record.queue] then
        waiting_in_removed = waiting_in_removed + 1
    elseif record and dropped_channel[record.lead.channel] then
        reasons[#reasons + 1] = string.format('queue %s: lead %s is held for rep %s on channel %s, which this routing ' ..
            'drops; let it be served or close it first, or keep the channel', record.queue, record.id,
            record.held_for, record.lead.channel)
    end
end
-- The leads prepared must be exactly those waiting or held in the removed queues now: as many,
-- and each one of them (a lead leaving and another arriving meanwhile keep the count).
local stale = waiting_in_removed ~= #stranded
for _, lead in ipairs(stranded) do
    local record = load_record(lead.id)
    local q = record and record.status == 'queued' and removed_by_name[record.queue]
    local waits = q and (record.held_for and redis.call('ZSCORE', KEYS[K_HELD], held_entry(record))
                         or q.wait[record.lead.channel] and redis.call('ZSCORE', q.wait[record.lead.channel], lead.id))
    if not waits then stale = true end
end
if stale then
    error({err = 'STALE_WAITING leads entered or left the removed queues while this change was prepared'})
end
for _, lead in ipairs(stranded) do
    if lead.queue == '' then
        local record = load_record(lead.id)
        reasons[#reasons + 1] = string.format('lead %s waits on channel %s, which this routing drops; ' ..
            'close it first, or keep the channel', lead.id, record and record.lead.channel or '?')
    end
end
if #reasons > 0 then
    table.insert(reasons, 1, 'refused')
    return reasons
end

-- The new memberships and ready indexes, from live state.
for i, q in ipairs(ctx.queues) do
    redis.call('DEL', q.members, q.ready['*'])
    for _, channel in ipairs(ctx.channels) do redis.call('DEL', q.ready[channel]) end
    for j = 1, #members[i], 500 do
        redis.call('SADD', q.members, unpack(members[i], j, math.min(j + 499, #members[i])))
    end
end
local new_version = tostring(tonumber(ARGV[4]) + 1)
redis.call('HSET', KEYS[K_ROUTING], 'version', new_version, 'spec', spec, 'text', text, 'fingerprint', fingerprint,
           'source', source, 'at', ctx.now, 'by', actor)
redis.call('LPUSH', history_key, cjson.encode({version = new_version, fingerprint = fingerprint, source = source,
                                               at = ctx.now, by = actor ~= '' and actor or nil}))
local reps = {}
for i = 1, #members do
    for _, rep in ipairs(members[i]) do reps[rep] = true end
end
for rep, _ in pairs(reps) do index_rep_everywhere(ctx, rep) end

-- Leads stranded in removed queues go to the queue the new rules give them, as a new decision.
local drained = {}
for _, lead in ipairs(stranded) do
    local record = load_record(lead.id)
    if record and record.status == 'queued' then
        unwait(ctx, record)
        local from = record.queue
        local q = ctx.by_name[lead.queue]
        add_history(record, ctx.now, 'rerouted', {from_queue = from, queue = q.name,
            reason = string.format('routing version %s removed queue %s', new_version, from), by = actor ~= '' and actor or nil})
        drained[#drained + 1] = decide(ctx, record, q, {priority = record.lead.priority, rerouted_from = from}, 0)
    end
end
-- The routing in force decides when a waiting lead overflows or goes to the pool, counted from when
-- it came to wait.
for _, q in ipairs(overflow_changed) do
    for _, channel in ipairs(ctx.channels) do
        for _, lead_id in ipairs(redis.call('ZRANGE', q.wait[channel], 0, -1)) do
            local at = wait_due(q, load_record(lead_id))
            if at then
                redis.call('ZADD', KEYS[K_DUE], at, lead_id)
            else
                redis.call('ZREM', KEYS[K_DUE], lead_id)
            end
        end
    end
end
for _, q in ipairs(removed) do
    redis.call('DEL', q.members, q.state, q.ready['*'], q.pool)
    for _, channel in ipairs(old_channels) do redis.call('DEL', q.ready[channel], q.wait[channel], q.waitidx[channel]) end
end
for _, triple in ipairs(dropped) do redis.call('DEL', triple.ready, triple.wait, triple.waitidx) end
for rep, _ in pairs(reps) do drain_rep(ctx, rep, drained) end
return {'ok', new_version, drained, #stranded}
