-- Shared helpers, prepended to every script at registration (store.py), so each script stays one
-- operation and no helper is written twice. Every key a script touches arrives in KEYS; this file
-- only picks among them.
--
-- Key layout shared by all scripts (see dispatcher/state/keys.py):
--   KEYS[1..12] leads, rep profiles, rep:cap, rep:load, rep:skills, rep:rank, rep:status, rep:seen,
--               rep:last_assigned, recent assignments, assignment counter, open leads
--   then one block per queue: members, ready(queue, "*"), ready(queue, c) for c in CHANNELS,
--               wait(queue, c) for c in CHANNELS
-- ARGV layout shared by all scripts:
--   ARGV[1] number of queues, ARGV[2] CHANNELS (comma-separated), ARGV[3] presence TTL in ms,
--   then per queue: name, strategy, order codes, heartbeat window in ms (0 = presence TTL only);
--   then the script's own arguments, from ctx.argi on.

local K_LEADS, K_PROFILES, K_CAP, K_LOAD, K_SKILLS, K_RANK, K_STATUS, K_SEEN, K_LAST = 1, 2, 3, 4, 5, 6, 7, 8, 9
local K_RECENT, K_ASSIGNED, K_OPEN = 10, 11, 12
local FIXED_KEYS = 12
-- How many of the latest assignments the supervisor page can show.
local RECENT_KEPT = 50
-- Score of a waiting lead: higher priority first, then older first. 1e13 ms is ~317 years.
local PRIORITY_SPAN = 1e13
-- How far a drain looks into one wait set for a lead this rep may take (skills, heartbeat window).
local DRAIN_SCAN_LIMIT = 200
local DRAIN_PAGE = 8

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function split(text, sep)
    local parts = {}
    if text == nil or text == '' then return parts end
    for part in string.gmatch(text, '([^' .. sep .. ']+)') do parts[#parts + 1] = part end
    return parts
end

local function parse_context()
    local ctx = {queues = {}, by_name = {}, channels = split(ARGV[2], ','),
                 presence_ttl = tonumber(ARGV[3]), now = now_ms()}
    local channel_count = #ctx.channels
    local k, a = FIXED_KEYS, 4
    for i = 1, tonumber(ARGV[1]) do
        local q = {name = ARGV[a], strategy = ARGV[a + 1], order = ARGV[a + 2],
                   window = tonumber(ARGV[a + 3]), members = KEYS[k + 1],
                   ready = {['*'] = KEYS[k + 2]}, wait = {}}
        for j, channel in ipairs(ctx.channels) do
            q.ready[channel] = KEYS[k + 2 + j]
            q.wait[channel] = KEYS[k + 2 + channel_count + j]
        end
        ctx.queues[i] = q
        ctx.by_name[q.name] = q
        k = k + 2 + 2 * channel_count
        a = a + 4
    end
    ctx.argi = a
    return ctx
end

-- The capacity bucket a rep spends for a channel: '*' when its capacity is one number for all
-- channels, else the channel itself (nil when the rep does not take that channel at all).
local function bucket_for(rep, channel)
    if redis.call('HEXISTS', KEYS[K_CAP], rep .. '|*') == 1 then return '*' end
    if redis.call('HEXISTS', KEYS[K_CAP], rep .. '|' .. channel) == 1 then return channel end
    return nil
end

local function load_and_cap(rep, bucket)
    local field = rep .. '|' .. bucket
    local load = tonumber(redis.call('HGET', KEYS[K_LOAD], field) or '0')
    local cap = tonumber(redis.call('HGET', KEYS[K_CAP], field) or '0')
    return load, cap
end

local function is_present(ctx, rep)
    if redis.call('HGET', KEYS[K_STATUS], rep) ~= 'online' then return false end
    local seen = tonumber(redis.call('ZSCORE', KEYS[K_SEEN], rep) or '0')
    return seen >= ctx.now - ctx.presence_ttl
end

local function is_recent_enough(ctx, q, rep)
    if q.window <= 0 then return true end
    local seen = tonumber(redis.call('ZSCORE', KEYS[K_SEEN], rep) or '0')
    return seen >= ctx.now - q.window
end

local function has_skills(rep, skills)
    for _, skill in ipairs(skills) do
        if redis.call('HEXISTS', KEYS[K_SKILLS], rep .. '|' .. skill) == 0 then return false end
    end
    return true
end

-- The index member: fixed-width sort fields, then the rep id, joined by '|' (never in an id). All
-- scores are 0, so the index is ordered by these bytes (ZRANGE BYLEX): ties stay exact without
-- packing several fields into one float.
local function member_for(order, rep, load, cap, last, rank)
    local parts = {}
    for code in string.gmatch(order, '%a') do
        if code == 'u' then
            parts[#parts + 1] = string.format('%010d', math.floor(load * 1e9 / cap))
        elseif code == 'l' then
            parts[#parts + 1] = string.format('%014d', last)
        elseif code == 'r' then
            parts[#parts + 1] = string.format('%07d', 1000000 - math.floor(rank * 1000))
        end
    end
    parts[#parts + 1] = rep
    return table.concat(parts, '|')
end

-- What the ready indexes order a rep by, for one capacity bucket. Read once per step and handed
-- on: a decision reads them to check the candidate, then re-indexes the rep from them, and each
-- read is a redis call (they were half of a decision's calls).
local function rep_facts(rep, bucket)
    local load, cap = load_and_cap(rep, bucket)
    return {load = load, cap = cap,
            last = tonumber(redis.call('HGET', KEYS[K_LAST], rep) or '0'),
            rank = tonumber(redis.call('HGET', KEYS[K_RANK], rep) or '0')}
end

local function member_of(q, rep, facts)
    if facts.cap <= 0 then return nil end
    return member_for(q.order, rep, facts.load, facts.cap, facts.last, facts.rank)
end

-- Removes the rep from every ready index of this bucket, by its facts before a change.
local function unindex_rep(ctx, rep, bucket, facts)
    facts = facts or rep_facts(rep, bucket)
    for _, q in ipairs(ctx.queues) do
        local member = member_of(q, rep, facts)
        if member then redis.call('ZREM', q.ready[bucket], member) end
    end
end

-- Puts the rep into the ready index of every queue it belongs to, if it can take work there now.
-- `facts` are its facts after the change; `present` skips the presence check a caller just made.
local function index_rep(ctx, rep, bucket, facts, present)
    if not present and not is_present(ctx, rep) then return end
    facts = facts or rep_facts(rep, bucket)
    if facts.load >= facts.cap then return end
    for _, q in ipairs(ctx.queues) do
        if redis.call('SISMEMBER', q.members, rep) == 1 then
            local member = member_of(q, rep, facts)
            if member then redis.call('ZADD', q.ready[bucket], 0, member) end
        end
    end
end

-- The rep's capacity buckets among the channels this call was given.
local function buckets_of(ctx, rep)
    local found = {}
    if redis.call('HEXISTS', KEYS[K_CAP], rep .. '|*') == 1 then return {'*'} end
    for _, channel in ipairs(ctx.channels) do
        if redis.call('HEXISTS', KEYS[K_CAP], rep .. '|' .. channel) == 1 then found[#found + 1] = channel end
    end
    return found
end

local function unindex_rep_everywhere(ctx, rep)
    for _, bucket in ipairs(buckets_of(ctx, rep)) do unindex_rep(ctx, rep, bucket) end
end

local function index_rep_everywhere(ctx, rep)
    for _, bucket in ipairs(buckets_of(ctx, rep)) do index_rep(ctx, rep, bucket) end
end

local function wait_score(priority, accepted_at)
    return (9 - priority) * PRIORITY_SPAN + accepted_at
end

local function load_record(lead_id)
    local raw = redis.call('HGET', KEYS[K_LEADS], lead_id)
    if not raw then return nil end
    return cjson.decode(raw)
end

local function save_record(record)
    redis.call('HSET', KEYS[K_LEADS], record.id, cjson.encode(record))
end

local function add_history(record, at, event, extra)
    local entry = extra or {}
    entry.at = at
    entry.event = event
    if type(record.history) ~= 'table' then record.history = {} end
    record.history[#record.history + 1] = entry
end

-- Reserves one unit of the rep's bucket and records the assignment. The caller has checked that
-- the rep is present and has room, and may pass the rep_facts it read doing so; facts explain the
-- choice (the strategy turns them into words); `by` names the person behind a manual move.
-- The new last-assignment time also moves the rep in its other buckets' indexes; those entries
-- are not passed to a lead's decision and are healed by pick_rep when met.
local function reserve(ctx, record, q, rep, bucket, event, facts, known, by)
    local before = known or rep_facts(rep, bucket)
    unindex_rep(ctx, rep, bucket, before)
    redis.call('HINCRBY', KEYS[K_LOAD], rep .. '|' .. bucket, 1)
    redis.call('ZADD', KEYS[K_OPEN], 0, rep .. '|' .. record.id)
    redis.call('HSET', KEYS[K_LAST], rep, ctx.now)
    index_rep(ctx, rep, bucket, {load = before.load + 1, cap = before.cap, last = ctx.now, rank = before.rank}, true)
    facts.load = before.load
    facts.capacity = before.cap
    facts.rank = before.rank
    facts.idle_ms = before.last > 0 and (ctx.now - before.last) or cjson.null
    record.status = 'assigned'
    record.rep_id = rep
    record.queue = q.name
    record.strategy = q.strategy
    record.bucket = bucket
    record.facts = facts
    record.assigned_at = ctx.now
    add_history(record, ctx.now, event, {rep_id = rep, queue = q.name, strategy = q.strategy, by = by})
    save_record(record)
    local assignment = {record.id, rep, q.name, q.strategy, ctx.now, cjson.encode(facts), record.accepted_at}
    redis.call('LPUSH', KEYS[K_RECENT], cjson.encode(assignment))
    redis.call('LTRIM', KEYS[K_RECENT], 0, RECENT_KEPT - 1)
    redis.call('INCR', KEYS[K_ASSIGNED])
    return assignment
end

-- Gives back the unit this lead held. Only a lead still open on the rep gives one back, so a
-- repeated release can never free capacity twice.
local function release(ctx, rep, bucket, lead_id)
    if redis.call('ZREM', KEYS[K_OPEN], rep .. '|' .. lead_id) == 0 then return end
    local before = rep_facts(rep, bucket)
    unindex_rep(ctx, rep, bucket, before)
    redis.call('HSET', KEYS[K_LOAD], rep .. '|' .. bucket, before.load - 1)
    index_rep(ctx, rep, bucket, {load = before.load - 1, cap = before.cap, last = before.last, rank = before.rank})
end

-- Walks the queue's ready indexes for a channel (the shared '*' one and the channel's own) in
-- order, merged, and returns the first rep every filter lets through. Entries of reps that are
-- gone, full or out of date are removed on the way, so the index heals itself without a sweep.
local function pick_rep(ctx, q, channel, skills, exclude)
    local sources = {{key = q.ready['*'], after = '-', bucket = '*'},
                     {key = q.ready[channel], after = '-', bucket = channel}}
    local buffered = {{}, {}}
    local function refill(i)
        if #buffered[i] == 0 and sources[i].after then
            local batch = redis.call('ZRANGE', sources[i].key, sources[i].after, '+', 'BYLEX', 'LIMIT', 0, 32)
            if #batch == 0 then sources[i].after = nil end
            for n = #batch, 1, -1 do buffered[i][#buffered[i] + 1] = batch[n] end
            if #batch > 0 then sources[i].after = '(' .. batch[#batch] end
        end
    end
    local skipped = 0
    while true do
        refill(1)
        refill(2)
        local a, b = buffered[1][#buffered[1]], buffered[2][#buffered[2]]
        if not a and not b then return nil, skipped end
        local i = (b == nil or (a ~= nil and a <= b)) and 1 or 2
        local member = table.remove(buffered[i])
        local bucket = sources[i].bucket
        local rep = string.match(member, '([^|]+)$')
        local facts = rep_facts(rep, bucket)
        local fresh_member, has_room = member_of(q, rep, facts), facts.load < facts.cap
        local present = is_present(ctx, rep)
        if fresh_member ~= member or not has_room or not present or bucket_for(rep, channel) ~= bucket then
            redis.call('ZREM', sources[i].key, member)
            if fresh_member and fresh_member ~= member and has_room and present then
                redis.call('ZADD', sources[i].key, 0, fresh_member)
            end
        elseif rep ~= exclude and is_recent_enough(ctx, q, rep) and has_skills(rep, skills) then
            return {rep = rep, bucket = bucket, facts = facts}, skipped
        else
            skipped = skipped + 1
        end
    end
end

local function enqueue(ctx, record, q, by)
    local channel = record.lead.channel
    redis.call('ZADD', q.wait[channel], wait_score(record.lead.priority, record.accepted_at), record.id)
    record.status = 'queued'
    record.queue = q.name
    record.strategy = q.strategy
    record.rep_id = cjson.null
    record.bucket = nil
    record.facts = nil
    add_history(record, ctx.now, 'queued', {queue = q.name, by = by})
    save_record(record)
end

local function lead_skills(record)
    local skills = record.lead.skills
    if type(skills) ~= 'table' then return {} end
    return skills
end

-- After a rep gains room (a close, coming online, a capacity raised): hands it the best waiting
-- leads of its queues that it may take, highest priority first, oldest first, until it is full.
local function drain_rep(ctx, rep, assignments)
    if not is_present(ctx, rep) then return end
    for _, bucket in ipairs(buckets_of(ctx, rep)) do
        local channels = bucket == '*' and ctx.channels or {bucket}
        while true do
            local load, cap = load_and_cap(rep, bucket)
            if load >= cap then break end
            local best, best_score, best_queue
            for _, q in ipairs(ctx.queues) do
                if redis.call('SISMEMBER', q.members, rep) == 1 and is_recent_enough(ctx, q, rep) then
                    for _, channel in ipairs(channels) do
                        -- Page by page: the first waiting lead usually fits, and reading the whole
                        -- scan limit for each channel made a drain cost three decisions.
                        local start, scanned, settled = 0, 0, false
                        while not settled and scanned < DRAIN_SCAN_LIMIT do
                            local waiting = redis.call('ZRANGE', q.wait[channel], start, start + DRAIN_PAGE - 1, 'WITHSCORES')
                            settled = #waiting < 2 * DRAIN_PAGE
                            local removed = 0
                            for n = 1, #waiting, 2 do
                                local score = tonumber(waiting[n + 1])
                                scanned = scanned + 1
                                if best_score and score >= best_score then settled = true break end
                                local candidate = load_record(waiting[n])
                                if candidate == nil or candidate.status ~= 'queued' then
                                    redis.call('ZREM', q.wait[channel], waiting[n])
                                    removed = removed + 1
                                elseif has_skills(rep, lead_skills(candidate)) then
                                    best, best_score, best_queue = candidate, score, q
                                    settled = true
                                    break
                                end
                            end
                            -- Entries removed above shift the later ones down by as many ranks.
                            start = start + DRAIN_PAGE - removed
                        end
                    end
                end
            end
            if not best then break end
            redis.call('ZREM', best_queue.wait[best.lead.channel], best.id)
            local waited = ctx.now - best.accepted_at
            assignments[#assignments + 1] = reserve(ctx, best, best_queue, rep, bucket, 'assigned',
                {drained = true, waited_ms = waited, priority = best.lead.priority})
        end
    end
end
