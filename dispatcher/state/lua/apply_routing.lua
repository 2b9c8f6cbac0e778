-- apply_routing: replace the routing in force by a new one, in one atomic step that every worker
-- sees at once (each step checks the routing version it was built for; lib.lua). Rebuilds every
-- queue's members and ready indexes, routes again the leads waiting in queues the new routing
-- removes (recording why), deletes what the old routing left behind, and drains waiting leads
-- to reps with room. Refused, changing nothing, when it cannot be applied safely.
-- KEYS: the shared layout (lib.lua) for the NEW routing, then: routing history;
--       for each removed queue: members, state, ready(*), then ready, wait, wait index per OLD channel;
--       for each queue kept but losing channels: ready, wait, wait index per dropped channel.
-- ARGV: the shared layout for the new routing, with ARGV[4] the version expected in force; then
--       new routing JSON, its text as written, fingerprint, source, actor, roster version the members
--       were computed from,
--       old channels (comma-separated), removed queue count R, R names, dropped-channel triple count T
--       and T labels ("queue|channel"),
--       per new queue: member count M and M rep ids, stranded lead count S and S (lead id, new queue) pairs.
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
for i = 1, tonumber(ARGV[a]) do
    stranded[#stranded + 1] = {id = ARGV[a + 2 * i - 1], queue = ARGV[a + 2 * i]}
end

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
local waiting_in_removed = 0
for _, q in ipairs(removed) do
    for _, channel in ipairs(old_channels) do waiting_in_removed = waiting_in_removed + redis.call('ZCARD', q.wait[channel]) end
end
-- The leads prepared must be exactly those waiting in the removed queues now: as many, and each
-- one of them (a lead leaving and another arriving meanwhile keep the count).
local stale = waiting_in_removed ~= #stranded
local removed_by_name = {}
for _, q in ipairs(removed) do removed_by_name[q.name] = q end
for _, lead in ipairs(stranded) do
    local record = load_record(lead.id)
    local q = record and record.status == 'queued' and removed_by_name[record.queue]
    if not (q and q.wait[record.lead.channel] and redis.call('ZSCORE', q.wait[record.lead.channel], lead.id)) then
        stale = true
    end
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
        local choice, why = pick_rep(ctx, q, record.lead.channel, lead_skills(record), nil)
        if choice then
            why.priority, why.rerouted_from = record.lead.priority, from
            drained[#drained + 1] = reserve(ctx, record, q, choice.rep, choice.bucket, 'assigned', why, choice.facts)
        else
            enqueue(ctx, record, q)
        end
    end
end
for _, q in ipairs(removed) do
    redis.call('DEL', q.members, q.state, q.ready['*'])
    for _, channel in ipairs(old_channels) do redis.call('DEL', q.ready[channel], q.wait[channel], q.waitidx[channel]) end
end
for _, triple in ipairs(dropped) do redis.call('DEL', triple.ready, triple.wait, triple.waitidx) end
for rep, _ in pairs(reps) do drain_rep(ctx, rep, drained) end
return {'ok', new_version, drained, #stranded}
