-- Shared helpers, prepended to every script at registration (layout.py), after the strategy_named
-- function that layout.py builds from the strategy declarations (strategies/*.py): what each strategy
-- orders its ready index by, how a decision walks it, which filters it applies. So each script
-- stays one operation, no helper is written twice, and no strategy is written here. Every key a
-- script touches arrives in KEYS; this file only picks among them.
--
-- Key layout shared by all scripts (see dispatcher/state/keys.py):
--   KEYS[1..29] leads, rep profiles, rep:cap, rep:load, rep:skills, rep:rank, rep:status, rep:seen,
--               rep:last_assigned, recent assignments, assignment counter, open leads, outbox,
--               routing, closed leads, roster version, rep:weight, owners, held leads, due,
--               outcomes, assignment log, notifications, rep log, rep log's oldest entries,
--               offer timeouts, claims, offers, breach counts, rep:shift, rep:shift_due
--   then one block per queue: members, state, ready(queue, "*"), ready(queue, c) for c in CHANNELS,
--               wait(queue, c) for c in CHANNELS, wait index(queue, c) for c in CHANNELS, pool
-- ARGV layout shared by all scripts:
--   ARGV[1] number of queues, ARGV[2] CHANNELS (comma-separated), ARGV[3] presence TTL in ms,
--   ARGV[4] the routing version this layout was built from, ARGV[5] the default queue (where a lead
--   of a queue no longer routed is decided again),
--   then per queue (QUEUE_ARGS): name, strategy, heartbeat window in ms (0 = presence TTL only),
--   overflow after ms (0 = none), overflow target, sticky wait in ms (-1 = not sticky), the
--   strategy's options (JSON, every option filled in), offer accept timeout in ms (0 = no offers,
--   leads are assigned), offer timeouts in a row that set a rep away (0 = never);
--   pool after ms (0 = never by waiting), claims
--   per hour per rep (0 = no limit), SLA first contact in ms (0 = no SLA), on breach (pool |
--   reroute | escalate | ''), the queue a breach escalates to ('' = none);
--   then the script's own arguments, from ctx.argi on (and its own keys, if any, from ctx.keyi on).
--
-- A layout built from a routing other than the one in force is refused before anything is
-- written (error STALE_ROUTING): the caller adopts the routing in force and runs the step again,
-- so no worker ever decides with a routing another worker has replaced.

local K_LEADS, K_PROFILES, K_CAP, K_LOAD, K_SKILLS, K_RANK, K_STATUS, K_SEEN, K_LAST = 1, 2, 3, 4, 5, 6, 7, 8, 9
local K_RECENT, K_ASSIGNED, K_OPEN, K_OUTBOX, K_ROUTING, K_CLOSED, K_ROSTER = 10, 11, 12, 13, 14, 15, 16
local K_WEIGHT, K_OWNERS, K_HELD, K_DUE, K_OUTCOMES, K_LOG = 17, 18, 19, 20, 21, 22
local K_NOTIFY, K_REP_LOG, K_REP_OLDEST, K_OFFER_TIMEOUTS, K_CLAIMS, K_OFFERS, K_BREACHES = 23, 24, 25, 26, 27, 28, 29
local K_SHIFT, K_SHIFT_DUE = 30, 31
-- (layout.py registers each script with these numbers in place of the names: with_key_numbers.)
local FIXED_KEYS = 31
local QUEUE_ARGS = 14
-- Redis turns a number handed to redis.call into text with printf's %.17g, which costs about
-- half a microsecond more than passing the text: the fixed numbers of a decision's calls are text.
-- The supervisor page can show the latest 50 assignments: the list keeps indexes 0 to RECENT_LAST.
local RECENT_LAST = '49'
-- How many notifications the stream keeps (about: trimmed with MAXLEN ~): how far back an SSE
-- client's Last-Event-ID can resume, and how far the webhook relay may fall behind.
local NOTIFY_KEPT = '100000'
-- Score of a waiting lead: higher priority first, then older first. 1e13 ms is ~317 years.
local PRIORITY_SPAN = 1e13

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

local function routing_version()
    return redis.call('HGET', KEYS[K_ROUTING], 'version') or '0'
end

local function parse_context()
    if routing_version() ~= ARGV[4] then
        error({err = 'STALE_ROUTING this step was built for routing version ' .. ARGV[4] ..
                     ', the routing in force is version ' .. routing_version()})
    end
    local ctx = {queues = {}, by_name = {}, channels = split(ARGV[2], ','),
                 presence_ttl = tonumber(ARGV[3]), now = now_ms(),
                 default_queue = ARGV[5]}
    local channel_count = #ctx.channels
    local k, a = FIXED_KEYS, 6
    for i = 1, tonumber(ARGV[1]) do
        local strategy = strategy_named(ARGV[a + 1])
        local q = {name = ARGV[a], strategy = ARGV[a + 1], s = strategy, order = strategy.order,
                   window = tonumber(ARGV[a + 2]), overflow_ms = tonumber(ARGV[a + 3]), overflow_to = ARGV[a + 4],
                   sticky_ms = tonumber(ARGV[a + 5]), options_json = ARGV[a + 6],
                   offer_ms = tonumber(ARGV[a + 7]), away_after = tonumber(ARGV[a + 8]),
                   pool_ms = tonumber(ARGV[a + 9]), claims_per_hour = tonumber(ARGV[a + 10]),
                   sla_ms = tonumber(ARGV[a + 11]), on_breach = ARGV[a + 12], escalate_to = ARGV[a + 13],
                   members = KEYS[k + 1], state = KEYS[k + 2],
                   ready = {['*'] = KEYS[k + 3]}, wait = {}, waitidx = {}}
        for j, channel in ipairs(ctx.channels) do
            q.ready[channel] = KEYS[k + 3 + j]
            q.wait[channel] = KEYS[k + 3 + channel_count + j]
            q.waitidx[channel] = KEYS[k + 3 + 2 * channel_count + j]
        end
        q.pool = KEYS[k + 4 + 3 * channel_count]
        ctx.queues[i] = q
        ctx.by_name[q.name] = q
        k = k + 4 + 3 * channel_count
        a = a + QUEUE_ARGS
    end
    ctx.argi, ctx.keyi = a, k + 1
    return ctx
end

-- Every change other processes must hear of goes into the outbox stream in the same step as the
-- change itself; the workers relay it to Kafka (dispatcher/outbox.py), so an event can be late
-- but never lost. fields: topic (without prefix), key, and either value (JSON) or row (an
-- assignment as the scripts return it, which the relay turns into the public event).
-- Returns the entry id: the event's id.
local function emit(topic, key, kind, body)
    return redis.call('XADD', KEYS[K_OUTBOX], '*', 'topic', topic, 'key', key, kind, body)
end

-- Set by a step whose caller announces what it decides (assign.lua: a lead's own decision, see
-- reserve; accept.lua: the decision announces the lead's acceptance with it): its assignment and
-- its history entries go out from the caller, not the outbox.
local announced_by_caller = false

-- An assignment's facts go into three JSON texts (its record, its row, its history entry's event
-- in the rep log): reserve encodes them once, after their last change, and those texts splice it in.
local facts_json = {}

-- cjson.encode(object), with its `facts` as reserve encoded them.
local function encode_with_facts(object)
    local facts = object.facts
    local encoded = facts and facts_json[facts]
    if not encoded then return cjson.encode(object) end
    object.facts = nil
    local json = cjson.encode(object)
    object.facts = facts
    return string.sub(json, 1, -2) .. ',"facts":' .. encoded .. '}'
end

-- Tells the rep's own connections (SSE, through one reader per worker) and the webhooks that
-- something came its way, from the step that decided it, whichever worker holds the connection.
-- kind/body as for emit: 'row' or 'moved' (an assignment row) or 'value' (JSON).
local function notify(rep, kind, body)
    redis.call('XADD', KEYS[K_NOTIFY], 'MAXLEN', '~', NOTIFY_KEPT, '*', 'rep', rep, kind, body)
end

-- The capacity bucket a rep spends for a channel: '*' when its capacity is one number for all
-- channels, else the channel itself (nil when the rep does not take that channel at all).
local function bucket_for(rep, channel)
    if redis.call('HEXISTS', KEYS[K_CAP], rep .. '|*') == 1 then return '*' end
    if redis.call('HEXISTS', KEYS[K_CAP], rep .. '|' .. channel) == 1 then return channel end
    return nil
end

-- Also says whether the rep has this bucket at all (a capacity for it, even 0).
local function load_and_cap(rep, bucket)
    local field = rep .. '|' .. bucket
    local load = tonumber(redis.call('HGET', KEYS[K_LOAD], field) or '0')
    local cap = redis.call('HGET', KEYS[K_CAP], field)
    return load, tonumber(cap or '0'), cap ~= false
end

local function is_present(ctx, rep)
    if redis.call('HGET', KEYS[K_STATUS], rep) ~= 'online' then return false end
    local seen = tonumber(redis.call('ZSCORE', KEYS[K_SEEN], rep) or '0')
    return seen >= ctx.now - ctx.presence_ttl
end

-- Whether the rep's schedule has it on shift, as Python last computed it (shift.lua, upsert_rep.lua);
-- a rep without a schedule has no entry and is always on shift.
local function on_shift(rep)
    return redis.call('HGET', KEYS[K_SHIFT], rep) ~= 'off'
end

-- May the rep be given new work now: online with fresh heartbeats, and on shift.
local function can_work(ctx, rep)
    return on_shift(rep) and is_present(ctx, rep)
end

-- An instant (ms since 1970) as ISO-8601 UTC to the second, for refusals in words: days to a civil
-- date by Howard Hinnant's algorithm (Redis Lua has no os.date).
local function iso_utc(ms)
    local seconds = math.floor(ms / 1000)
    local days, rest = math.floor(seconds / 86400), seconds % 86400
    local z = days + 719468
    local era = math.floor(z / 146097)
    local doe = z - era * 146097
    local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
    local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
    local mp = math.floor((5 * doy + 2) / 153)
    local month = mp < 10 and mp + 3 or mp - 9
    local year = yoe + era * 400 + (month <= 2 and 1 or 0)
    return string.format('%04d-%02d-%02dT%02d:%02d:%02dZ', year, month, doy - math.floor((153 * mp + 2) / 5) + 1,
                         math.floor(rest / 3600), math.floor(rest % 3600 / 60), rest % 60)
end

-- Why an off-shift rep cannot take work, in words: until when.
local function off_shift_words(rep)
    local until_ms = redis.call('ZSCORE', KEYS[K_SHIFT_DUE], rep)
    return until_ms and ('is off shift until ' .. iso_utc(tonumber(until_ms))) or 'is off shift'
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
local function member_for(order, rep, load, cap, last, rank, pass)
    local parts = {}
    for code in string.gmatch(order, '%a') do
        if code == 'p' then
            parts[#parts + 1] = string.format('%016d', pass)
        elseif code == 'u' then
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
    local load, cap, has_bucket = load_and_cap(rep, bucket)
    return {load = load, cap = cap, has_bucket = has_bucket,
            last = tonumber(redis.call('HGET', KEYS[K_LAST], rep) or '0'),
            rank = tonumber(redis.call('HGET', KEYS[K_RANK], rep) or '0')}
end

-- A rep's pass in a queue with weighted turns (strategies/base.py, TURNS): the weighted leads it
-- has taken there, kept in the queue's state as "pass|rep".
local function turn_pass(q, rep)
    return tonumber(redis.call('HGET', q.state, 'pass|' .. rep) or '0')
end

local function member_of(q, rep, facts)
    if facts.cap <= 0 then return nil end
    local pass = q.s.turn and turn_pass(q, rep) or 0
    return member_for(q.order, rep, facts.load, facts.cap, facts.last, facts.rank, pass)
end

-- A rep entering a weighted queue's ready index starts no further back than the virtual time of
-- the walks it joins: time away, full or outside the queue earns no burst of leads. A walk for a
-- lead meets only the '*' index and its channel's, so each channel has its own virtual time
-- ("vt|<channel>", the pass its last turn was taken at; take_turn) and "vt" is the highest of them:
-- a rep of the '*' bucket joins every channel's walks and starts at "vt", a rep of one channel's
-- bucket at that channel's (at "vt" before that channel's first turn). One virtual time for all
-- channels would leave a rep that only one channel's walks meet behind the others' turns.
-- Reps already in the index are never behind it, so indexing them again is a no-op.
local function catch_up(q, rep, bucket)
    local own, highest = unpack(redis.call('HMGET', q.state, 'vt|' .. bucket, 'vt'))
    local vt = tonumber(bucket ~= '*' and own or highest or '0')
    if turn_pass(q, rep) < vt then redis.call('HSET', q.state, 'pass|' .. rep, vt) end
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
    if not present and not can_work(ctx, rep) then return end
    facts = facts or rep_facts(rep, bucket)
    if facts.load >= facts.cap then return end
    for _, q in ipairs(ctx.queues) do
        if redis.call('SISMEMBER', q.members, rep) == 1 then
            if q.s.turn then catch_up(q, rep, bucket) end
            local member = member_of(q, rep, facts)
            if member then redis.call('ZADD', q.ready[bucket], '0', member) end
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

-- A lead record keeps the body exactly as it came (`body`, JSON text) and, as `lead`, only what the
-- scripts route by. Redis's cjson writes numbers with 14 significant digits and empty lists as {},
-- so a body decoded and encoded again here would no longer say what was sent.
local function with_body(record, lead_json)
    local lead = cjson.decode(lead_json)
    record.lead = {channel = lead.channel, priority = lead.priority, skills = lead.skills}
    record.body = lead_json
end

local function load_record(lead_id)
    local raw = redis.call('HGET', KEYS[K_LEADS], lead_id)
    if not raw then return nil end
    return cjson.decode(raw)
end

-- The offers index follows the status saved here, so every step that offers a lead or ends an offer
-- (accept, reject, timeout, return, close, reassign, routing change) keeps it without a line of its own.
local function save_record(record)
    local entry = record.status == 'offered' and record.queue .. '|' .. record.id or nil
    if record.offer_entry ~= entry then
        if record.offer_entry then redis.call('ZREM', KEYS[K_OFFERS], record.offer_entry) end
        if entry then redis.call('ZADD', KEYS[K_OFFERS], '0', entry) end
        record.offer_entry = entry
    end
    redis.call('HSET', KEYS[K_LEADS], record.id, encode_with_facts(record))
end

-- The lead-events body of a history entry: the entry's fields, the lead, and `detail` (fields for
-- the event only, such as a decision's facts, which the relay turns into its reason in words).
local function lead_event(record, entry, detail)
    local body = {}
    for name, value in pairs(detail or {}) do body[name] = value end
    for name, value in pairs(entry) do body[name] = value end
    body.type, body.lead_id = 'lead_event', record.id
    return body
end

-- The id of the n-th history entry of a lead's own decision, announced by the worker (results.py
-- decision_event_id names the decision's assignment event alike).
local function decided_event_id(record, n)
    return 'decided:' .. record.id .. '#' .. n
end

-- Every rep an entry concerns gets it in its log (GET /v1/reps/{id}/history): the rep it names,
-- the rep a move took the lead from, and the rep the lead is with.
local function reps_concerned(record, entry)
    local reps, seen = {}, {}
    for _, rep in ipairs({entry.rep_id or false, entry.from_rep or false, record.rep_id or false}) do
        if type(rep) == 'string' and not seen[rep] then seen[rep] = true reps[#reps + 1] = rep end
    end
    return reps
end

-- Members "rep|time|event id|JSON" (scores 0; time in microseconds, 16 digits, so entries of one
-- millisecond keep the order they were written in): a rep's log is one BYLEX range in time order.
-- `rep log oldest` dates each rep's first entry, so the retention step visits only the reps that
-- have something to drop.
local function log_for_reps(reps, event_id, json)
    local clock = redis.call('TIME')
    local micros = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
    for _, rep in ipairs(reps) do
        redis.call('ZADD', KEYS[K_REP_LOG], '0', string.format('%s|%016d|%s|%s', rep, micros, event_id, json))
        redis.call('ZADD', KEYS[K_REP_OLDEST], 'NX', math.floor(micros / 1000), rep)
    end
end

-- The JSON of each entry a lead's own decision announces, by entry, as add_history wrote it to the
-- rep log: decision_events hands the caller the same text rather than encoding it again.
local announced_json = {}

-- Every entry of a lead's history also goes to the lead-events topic, from here, in the step that
-- writes it: through the outbox, or, for a lead's own decision, with the decision (assign.lua).
-- `record.announced` counts the entries the decision announces, so a replay announces them again.
local function add_history(record, at, event, extra, detail)
    local entry = extra or {}
    entry.at = at
    entry.event = event
    if type(record.history) ~= 'table' then record.history = {} end
    record.history[#record.history + 1] = entry
    local body = lead_event(record, entry, detail)
    local reps = reps_concerned(record, entry)
    if announced_by_caller then
        record.announced = #record.history
        body.event_id = decided_event_id(record, record.announced)
        announced_json[entry] = encode_with_facts(body)
        if #reps > 0 then log_for_reps(reps, body.event_id, announced_json[entry]) end
    else
        body.event_id = emit('lead-events', record.id, 'value', cjson.encode(body))
        if #reps > 0 then log_for_reps(reps, body.event_id, encode_with_facts(body)) end
    end
end

-- The lead events a lead's own decision announces, with their ids, as JSON (a list): the texts
-- this step wrote, and those of entries an earlier step wrote (accept.lua's), encoded again.
local function decision_events(record)
    local events = {}
    for n = 1, record.announced or 0 do
        local entry = record.history[n]
        local json = announced_json[entry]
        if not json then
            local body = lead_event(record, entry, entry.event == 'assigned' and record.facts and {facts = record.facts} or nil)
            body.event_id = decided_event_id(record, n)
            json = cjson.encode(body)
        end
        events[n] = json
    end
    return '[' .. table.concat(events, ',') .. ']'
end

local DAY_MS = 86400000

-- The rep's conversion over the queue's window, with the prior (strategies/performance.py).
local function conversion(ctx, q, rep, facts)
    local options = cjson.decode(q.options_json)
    local today, days = math.floor(ctx.now / DAY_MS), math.floor(options.window_days)
    local fields = {}
    for day = today - days + 1, today do
        fields[#fields + 1] = rep .. '|' .. day .. '|closed'
        fields[#fields + 1] = rep .. '|' .. day .. '|won'
    end
    local counts = redis.call('HMGET', KEYS[K_OUTCOMES], unpack(fields))
    local closed, won = 0, 0
    for i = 1, #counts, 2 do
        closed = closed + tonumber(counts[i] or '0')
        won = won + tonumber(counts[i + 1] or '0')
    end
    facts.won, facts.closed, facts.window_days = won, closed, days
    return (won + options.prior_rate * options.prior_leads) / (closed + options.prior_leads)
end

-- What the queue's strategy remembers once `rep` takes a lead in it, with its figures added to
-- `facts`. `walked` is set when the strategy's own walk chose the rep (pick_rep): only then is it
-- the rotation's turn (a drain or a supervisor's move is not); a weighted pass grows with every
-- lead the rep takes in the queue, since it measures service received. Called by reserve between
-- the rep's unindex and index, so its ready entries follow the new pass.
local function take_turn(ctx, q, rep, walked, facts)
    if walked and q.s.walk == 'cycle' then
        facts.after = redis.call('HGET', q.state, 'cursor') or cjson.null
        redis.call('HSET', q.state, 'cursor', rep)
    elseif walked and q.s.walk == 'random' then
        facts.ready = walked.ready
    end
    if not q.s.turn then return end
    local pass = turn_pass(q, rep)
    local weight
    if q.s.turn == 'conversion' then
        weight = conversion(ctx, q, rep, facts)
    else
        weight = tonumber(redis.call('HGET', KEYS[K_WEIGHT], rep) or '1')
    end
    if walked then
        -- The first rep the walk met with room has the lowest pass of the indexes it walked: the
        -- virtual time of the lead's channel (catch_up).
        local vt = walked.first == rep and pass or turn_pass(q, walked.first)
        redis.call('HSET', q.state, 'vt|' .. walked.channel, vt)
        if vt > tonumber(redis.call('HGET', q.state, 'vt') or '0') then redis.call('HSET', q.state, 'vt', vt) end
    end
    redis.call('HSET', q.state, 'pass|' .. rep, pass + math.floor(PASS_SCALE / math.max(weight, MIN_WEIGHT) + 0.5))
    facts.weight, facts.pass = weight, pass
end

-- Counts a close of an assigned lead for the rep's conversion: "rep|day|closed" and, when won,
-- "rep|day|won". "rep|since" is the oldest day still kept; days before the last OUTCOME_DAYS go as
-- closes come in, so a rep's outcomes stay within 2 * OUTCOME_DAYS + 1 fields. Kept fields always
-- lie within OUTCOME_DAYS of `since`, so one HDEL of at most that many days prunes them.
local function record_outcome(ctx, rep, outcome)
    local day = math.floor(ctx.now / DAY_MS)
    redis.call('HINCRBY', KEYS[K_OUTCOMES], rep .. '|' .. day .. '|closed', '1')
    if outcome == 'won' then redis.call('HINCRBY', KEYS[K_OUTCOMES], rep .. '|' .. day .. '|won', '1') end
    local since = math.min(tonumber(redis.call('HGET', KEYS[K_OUTCOMES], rep .. '|since') or day), day)
    local keep_from = day - OUTCOME_DAYS + 1
    if since < keep_from then
        local gone = {}
        for old = since, math.min(keep_from - 1, since + OUTCOME_DAYS - 1) do
            gone[#gone + 1] = rep .. '|' .. old .. '|closed'
            gone[#gone + 1] = rep .. '|' .. old .. '|won'
        end
        redis.call('HDEL', KEYS[K_OUTCOMES], unpack(gone))
        since = keep_from
    end
    redis.call('HSET', KEYS[K_OUTCOMES], rep .. '|since', since)
end

-- When an offer made at `at` to `rep` must be looked at again: its end, or sooner when the rep's
-- heartbeats stop first (nothing calls when they stop, so the due step looks then, and again later
-- if the rep has sent more meanwhile).
local function offer_due_at(ctx, record)
    local seen = tonumber(redis.call('ZSCORE', KEYS[K_SEEN], record.rep_id) or '0')
    return math.min(record.offer_until, seen + ctx.presence_ttl + 1)
end

-- Announces a lead that now belongs to its rep: the supervisor page's latest, the counters, the
-- fairness log, and (unless the worker that read it from Kafka does) the assignments event.
local function announce_assignment(ctx, record, event)
    local assignment = {record.id, record.rep_id, record.queue, record.strategy, record.assigned_at,
                        facts_json[record.facts] or cjson.encode(record.facts), record.accepted_at}
    local row = cjson.encode(assignment)
    -- The first-contact clock runs from the moment the lead is the rep's (an accepted offer included).
    local q = ctx.by_name[record.queue]
    if q and q.sla_ms > 0 then redis.call('ZADD', KEYS[K_DUE], ctx.now + q.sla_ms, record.id) end
    notify(record.rep_id, event == 'reassigned' and 'moved' or 'row', row)
    redis.call('LPUSH', KEYS[K_RECENT], row)
    redis.call('LTRIM', KEYS[K_RECENT], '0', RECENT_LAST)
    redis.call('INCR', KEYS[K_ASSIGNED])
    redis.call('ZADD', KEYS[K_LOG], ctx.now, record.queue .. '|' .. record.rep_id .. '|' .. record.id)
    -- A lead's own decision is announced by the worker that reads it from Kafka, and acknowledged
    -- only once announced, so a crash replays it and the replay announces it again: its offset
    -- keeps it safe, and the outbox would only add a hop. Every other assignment (drains, moves,
    -- routing changes, accepted offers) has no offset behind it and goes through the outbox.
    if not announced_by_caller then
        emit('assignments', record.id, event == 'reassigned' and 'moved' or 'row', row)
    end
    return assignment
end

-- Reserves one unit of the rep's bucket and records the assignment, or in a queue with offers
-- (unless a supervisor named the rep) the offer: capacity is reserved alike, so the rep's load
-- counts it and nobody else is offered the unit, but the lead is the rep's only once it accepts
-- (accept_offer.lua); the offer goes to rep-events and nothing is announced on `assignments`
-- yet (returns nil). The caller has checked that
-- the rep is present and has room, and may pass the rep_facts it read doing so; facts explain the
-- choice (the strategy turns them into words); `by` names the person behind a manual move.
-- The new last-assignment time also moves the rep in its other buckets' indexes; those entries
-- are not passed to a lead's decision and are healed by pick_rep when met.
local function reserve(ctx, record, q, rep, bucket, event, facts, known, by)
    local before = known or rep_facts(rep, bucket)
    unindex_rep(ctx, rep, bucket, before)
    -- An assigned lead has nothing due (a drain takes leads whose overflow was still ahead).
    redis.call('ZREM', KEYS[K_DUE], record.id)
    -- The customer's owner is whoever took its last lead, however it got there (a supervisor's
    -- move included), so its next lead follows the rep that knows it. The entry names that lead
    -- too ("rep|lead"): it goes when that lead is forgotten (expire_closed.lua).
    if record.sticky_key then redis.call('HSET', KEYS[K_OWNERS], record.sticky_key, rep .. '|' .. record.id) end
    redis.call('HINCRBY', KEYS[K_LOAD], rep .. '|' .. bucket, '1')
    redis.call('ZADD', KEYS[K_OPEN], '0', rep .. '|' .. record.id)
    redis.call('HSET', KEYS[K_LAST], rep, ctx.now)
    take_turn(ctx, q, rep, before.walked, facts)
    index_rep(ctx, rep, bucket, {load = before.load + 1, cap = before.cap, last = ctx.now, rank = before.rank}, true)
    facts.rule = record.rule
    -- What happened before this rep explains the choice as much as the strategy's figures (its
    -- customer's last rep passed over, the queues it overflowed from); a supervisor's move is its own reason.
    if not facts.manual then
        facts.passed_over = record.passed_over
        facts.overflowed = record.overflowed
    end
    facts.load = before.load
    facts.capacity = before.cap
    facts.rank = before.rank
    facts.idle_ms = before.last > 0 and (ctx.now - before.last) or cjson.null
    record.rep_id = rep
    record.queue = q.name
    record.strategy = q.strategy
    record.bucket = bucket
    record.facts = facts
    if q.offer_ms > 0 and not facts.manual then
        record.status = 'offered'
        record.offered_at = ctx.now
        record.offer_until = ctx.now + q.offer_ms
        record.offer_event = event
        add_history(record, ctx.now, 'offered', {rep_id = rep, queue = q.name, strategy = q.strategy,
                                                 ['until'] = record.offer_until, by = by})
        redis.call('ZADD', KEYS[K_DUE], offer_due_at(ctx, record), record.id)
        save_record(record)
        local offer = cjson.encode({type = 'offer', rep_id = rep, lead_id = record.id, queue = q.name,
                                    ['until'] = record.offer_until})
        emit('rep-events', rep, 'value', offer)
        notify(rep, 'value', offer)
        return nil
    end
    record.status = 'assigned'
    record.assigned_at = ctx.now
    facts_json[facts] = cjson.encode(facts)
    -- Each assignment gives its rep the queue's whole first-contact time: a lead moved on after a
    -- breach or a release is the new rep's to contact.
    record.contacted_at = nil
    add_history(record, ctx.now, event, {rep_id = rep, queue = q.name, strategy = q.strategy, by = by,
                                         from_rep = type(facts.from_rep) == 'string' and facts.from_rep or nil},
                {facts = facts})
    save_record(record)
    return announce_assignment(ctx, record, event)
end

-- Gives back the unit this lead held. Only a lead still open on the rep gives one back, so a
-- repeated release can never free capacity twice.
local function release(ctx, rep, bucket, lead_id)
    -- An assigned lead is due only for its first contact, which the rep it leaves no longer owes.
    redis.call('ZREM', KEYS[K_DUE], lead_id)
    if redis.call('ZREM', KEYS[K_OPEN], rep .. '|' .. lead_id) == 0 then return end
    local before = rep_facts(rep, bucket)
    unindex_rep(ctx, rep, bucket, before)
    redis.call('HSET', KEYS[K_LOAD], rep .. '|' .. bucket, before.load - 1)
    index_rep(ctx, rep, bucket, {load = before.load - 1, cap = before.cap, last = before.last, rank = before.rank})
end

-- The "best_score" walk (strategies/skills.py) over the reps every filter lets through, in index
-- order: `offer(choice, skipped)` keeps the best skill score (the sum of the rep's levels over the
-- skills the lead asks for, each once), the earliest of equal scores, and returns true once a rep
-- has the highest possible score or the queue's max_compared reps were compared: its cost grows
-- with the eligible reps up to that bound. `taken()` is its choice (nil for none) and the facts
-- that explain it.
local function score_keeper(q, skills)
    local best, why
    local asked, named = {}, {}
    for _, skill in ipairs(skills) do
        if not named[skill] then named[skill] = true asked[#asked + 1] = skill end
    end
    local limit, top, compared = cjson.decode(q.options_json).max_compared, 10 * #asked, 0
    return function(choice, skipped)
        compared = compared + 1
        local score, levels = 0, {}
        if #asked > 0 then
            local fields = {}
            for n, skill in ipairs(asked) do fields[n] = choice.rep .. '|' .. skill end
            local found = redis.call('HMGET', KEYS[K_SKILLS], unpack(fields))
            for n, skill in ipairs(asked) do
                -- A rep lacking a skill scores 0 for it (a queue whose filters do not require it).
                local level = tonumber(found[n]) or 0
                levels[n] = {skill, level}
                score = score + level
            end
        end
        if not best or score > why.score then
            best, why = choice, {skipped = skipped, score = score, top = top, levels = #asked > 0 and levels or nil}
        end
        local done = score >= top or compared >= limit
        why.compared, why.bounded = compared, score < top and compared >= limit
        return done
    end, function() return best, why end
end

-- Whether a ready entry still says what its rep is now: a member of the queue, present, with room
-- in this bucket, sorted by its current facts. Returns the entry as a candidate, or nil after
-- removing it, with the member it was put back as when the rep still belongs (its sort key had
-- moved), so the index heals itself without a sweep.
local function live_entry(ctx, q, channel, key, bucket, member)
    local rep = string.match(member, '([^|]+)$')
    local facts = rep_facts(rep, bucket)
    local fresh_member, has_room = member_of(q, rep, facts), facts.load < facts.cap
    local present = can_work(ctx, rep)
    local member_now = redis.call('SISMEMBER', q.members, rep) == 1
    -- bucket_for(rep, channel) == bucket, from what rep_facts read: the walk meets the '*' index,
    -- whose bucket wins whenever the rep has it, and the channel's own, which counts only without it.
    if fresh_member == member and has_room and present and member_now and facts.has_bucket
       and (bucket == '*' or redis.call('HEXISTS', KEYS[K_CAP], rep .. '|*') == 0) then
        return {rep = rep, bucket = bucket, facts = facts}
    end
    redis.call('ZREM', key, member)
    -- Healing re-indexes only a rep that still belongs to the queue: a rep the routing or its
    -- profile took out must never get this queue's leads again.
    if fresh_member and fresh_member ~= member and has_room and present and member_now then
        redis.call('ZADD', key, '0', fresh_member)
        return nil, fresh_member
    end
    return nil
end

-- How many ready entries a walk reads from an index at first, and then at a time.
local WALK_FIRST_READ, WALK_READ = '4', '32'

-- Walks the queue's ready indexes for a channel (the shared '*' one and the channel's own) in
-- order, merged, over the members after `lo` (nil: from the start) up to `hi` included (nil: to
-- the end), handing each live entry to `visit` until it returns true; returns that entry.
local function walk_ready(ctx, q, channel, lo, hi, visit)
    local sources = {{key = q.ready['*'], after = lo and ('(' .. lo) or '-', bucket = '*'},
                     {key = q.ready[channel], after = lo and ('(' .. lo) or '-', bucket = channel}}
    local upper = hi and ('[' .. hi) or '+'
    local buffered = {{}, {}}
    -- Most walks end at the first entry or two, and every entry read is a string Lua builds, so
    -- the first read of each index is short and later ones longer.
    local function refill(i)
        if #buffered[i] == 0 and sources[i].after then
            local limit = sources[i].last and WALK_READ or WALK_FIRST_READ
            local batch = redis.call('ZRANGE', sources[i].key, sources[i].after, upper, 'BYLEX', 'LIMIT', '0', limit)
            if #batch == 0 then sources[i].after = nil end
            for n = #batch, 1, -1 do buffered[i][#buffered[i] + 1] = batch[n] end
            if #batch > 0 then
                sources[i].after = '(' .. batch[#batch]
                sources[i].last = batch[#batch]
            end
        end
    end
    -- A healed entry the walk has already read past (at or before the last member read, or after
    -- the end of an index read to its end) joins the buffer in its place, so the walk still meets
    -- it; one further on is read from the index in turn; one outside the bounds is not this walk's.
    local function revisit(i, member)
        if (lo and member <= lo) or (hi and member > hi) then return end
        if sources[i].after and member > sources[i].last then return end
        local stack, at = buffered[i], #buffered[i] + 1
        for n = 1, #stack do
            if stack[n] < member then at = n break end
        end
        table.insert(stack, at, member)
    end
    while true do
        refill(1)
        refill(2)
        local a, b = buffered[1][#buffered[1]], buffered[2][#buffered[2]]
        if not a and not b then return nil end
        local i = (b == nil or (a ~= nil and a <= b)) and 1 or 2
        local member = table.remove(buffered[i])
        local entry, readded = live_entry(ctx, q, channel, sources[i].key, sources[i].bucket, member)
        if entry then
            if visit(entry) then return entry end
        elseif readded then
            revisit(i, readded)
        end
    end
end

-- How many entries a random walk draws before it lists the eligible reps instead.
local RANDOM_DRAWS = 8

-- A uniform integer in 1..n from 52 bits of SHA1 of `seed` and `k` (strategies/random_pick.py says
-- why not math.random).
local function uniform(seed, k, n)
    local bits = tonumber(string.sub(redis.sha1hex(seed .. '|' .. k), 1, 13), 16)
    return math.floor(bits / 4503599627370496 * n) + 1
end

-- Draws ready entries uniformly (by position across both indexes) until one can take the lead;
-- a miss draws again, so the pick stays uniform among the eligible. After RANDOM_DRAWS misses it
-- lists every eligible rep and draws among them. Returns the entry and how many were ready.
local function draw_rep(ctx, q, channel, eligible)
    local keys, buckets = {q.ready['*'], q.ready[channel]}, {'*', channel}
    local clock = redis.call('TIME')
    local seed = clock[1] .. '.' .. clock[2] .. '|' .. redis.call('HINCRBY', q.state, 'draws', 1)
    local ready = 0
    for k = 1, RANDOM_DRAWS do
        local first_size = redis.call('ZCARD', keys[1])
        ready = first_size + redis.call('ZCARD', keys[2])
        if ready == 0 then return nil, 0 end
        local n = uniform(seed, k, ready)
        local i = n <= first_size and 1 or 2
        local at = (i == 1 and n or n - first_size) - 1
        local member = redis.call('ZRANGE', keys[i], at, at)[1]
        local entry = live_entry(ctx, q, channel, keys[i], buckets[i], member)
        if entry and eligible(entry) then return entry, ready end
    end
    local found = {}
    walk_ready(ctx, q, channel, nil, nil, function(entry)
        if eligible(entry) then found[#found + 1] = entry end
        return false
    end)
    if #found == 0 then return nil, ready end
    return found[uniform(seed, 0, #found)], ready
end

-- The rep the queue's strategy gives the lead, on the walk its declaration names: the first rep
-- every filter lets through from the best entry ("first"), or from just after the queue's cursor,
-- wrapping once ("cycle"); uniform draws ("random"); the best skill score ("best_score"). Returns
-- the choice, with its rep_facts marked `walked` (reserve hands them to take_turn), and the facts
-- that explain it (`skipped`: reps ahead of it the filters passed over); nil when nobody can take it,
-- and always for the "pool" walk, whose leads reps claim. `exclude`: a set of reps never picked (the
-- rep a lead is moved from, reps that let it go).
local function pick_rep(ctx, q, channel, skills, exclude)
    if q.s.walk == 'pool' then return nil end
    local skipped, first = 0, nil
    local function eligible(entry)
        return not exclude[entry.rep] and (not q.s.recent or is_recent_enough(ctx, q, entry.rep))
            and (not q.s.skills or has_skills(entry.rep, skills))
    end
    local function visit(entry)
        first = first or entry.rep
        if eligible(entry) then return true end
        skipped = skipped + 1
        return false
    end
    local choice, ready, why
    if q.s.walk == 'random' then
        choice, ready = draw_rep(ctx, q, channel, eligible)
    elseif q.s.walk == 'cycle' then
        local cursor = redis.call('HGET', q.state, 'cursor') or nil
        choice = walk_ready(ctx, q, channel, cursor, nil, visit)
        if not choice and cursor then choice = walk_ready(ctx, q, channel, nil, cursor, visit) end
    elseif q.s.walk == 'best_score' then
        local offer, taken = score_keeper(q, skills)
        walk_ready(ctx, q, channel, nil, nil, function(entry)
            return visit(entry) and offer(entry, skipped)
        end)
        choice, why = taken()
    else
        choice = walk_ready(ctx, q, channel, nil, nil, visit)
    end
    if not choice then return nil end
    choice.facts.walked = {first = first, ready = ready, channel = channel}
    return choice, why or {skipped = skipped}
end

local function lead_skills(record)
    local skills = record.lead.skills
    if type(skills) ~= 'table' then return {} end
    return skills
end

-- The skills a lead asks for, as one name: sorted, '+'-joined ('' for none). '+' and '|' never
-- occur in a skill name.
local function skill_signature(record)
    local skills, seen = {}, {}
    for _, skill in ipairs(lead_skills(record)) do
        if not seen[skill] then seen[skill] = true skills[#skills + 1] = skill end
    end
    table.sort(skills)
    return table.concat(skills, '+')
end

-- A waiting lead is in two sets of its queue and channel: `wait` (scored by wait_score) counts
-- the queue and finds its oldest lead; `waitidx` (all scores 0, ordered by bytes) groups leads by
-- the skills they ask for, best first within a group: "signature|band accepted|id". The head of
-- each group is one ZRANGE BYLEX away, so a drain finds the best lead a rep may take by looking
-- at one lead per group of skills, however many leads it cannot take wait ahead of it.
local function wait_entry(record)
    return string.format('%s|%d%014d|%s', skill_signature(record), 9 - record.lead.priority,
                         record.accepted_at, record.id)
end

-- When a lead waiting in queue q must be looked at again: the earlier of its overflow and its move
-- to the pool (nil: neither). move_due re-checks on wake-up which of them fell due.
local function wait_due(q, record)
    local since, at = record.waiting_since or record.accepted_at, nil
    if q.overflow_ms > 0 then at = since + q.overflow_ms end
    if q.pool_ms > 0 and (at == nil or since + q.pool_ms < at) then at = since + q.pool_ms end
    return at
end

-- Puts a queued lead into both wait sets of queue q for its channel (unwait takes it out).
local function wait_in(q, record)
    local channel = record.lead.channel
    redis.call('ZADD', q.wait[channel], wait_score(record.lead.priority, record.accepted_at), record.id)
    redis.call('ZADD', q.waitidx[channel], '0', wait_entry(record))
end

-- A lead that belongs to no rep now (waiting, held or pooled) in queue q: nothing of a past
-- assignment or offer stays on its record to be read as current.
local function unassign(record, q, status)
    record.status = status
    record.queue = q.name
    record.strategy = q.strategy
    record.rep_id = cjson.null
    record.bucket = nil
    record.facts = nil
end

local function enqueue(ctx, record, q, by)
    wait_in(q, record)
    unassign(record, q, 'queued')
    -- The overflow clock runs from here: the queue has had this long to find anyone for it (a
    -- hold for the customer's last rep offered it to nobody else, so it does not count).
    record.waiting_since = ctx.now
    local at = wait_due(q, record)
    if at then redis.call('ZADD', KEYS[K_DUE], at, record.id) end
    add_history(record, ctx.now, 'queued', {queue = q.name, by = by})
    save_record(record)
end

-- A held lead's entry in `held`: its rep, then priority band and age, so a rep's held leads are
-- one BYLEX range, best first.
local function held_entry(record)
    return string.format('%s|%d%014d|%s', record.held_for, 9 - record.lead.priority, record.accepted_at, record.id)
end

-- Takes a queued lead out of wherever it waits (the hold for its customer's last rep, or its
-- queue's wait sets, both always together), or a pooled lead out of its pool, and out of `due`.
local function unwait(ctx, record)
    redis.call('ZREM', KEYS[K_DUE], record.id)
    if record.status == 'pooled' then
        local q = ctx.by_name[record.queue]
        if q then redis.call('ZREM', q.pool, record.id) end
        record.pooled_at = nil
        return
    end
    if record.held_for then
        redis.call('ZREM', KEYS[K_HELD], held_entry(record))
        record.held_for, record.held_since, record.held_until = nil, nil, nil
        return
    end
    local q = ctx.by_name[record.queue]
    local channel = record.lead.channel
    if not q or not q.wait[channel] then return end
    redis.call('ZREM', q.wait[channel], record.id)
    redis.call('ZREM', q.waitidx[channel], wait_entry(record))
end

-- The best waiting lead of one queue and channel that a rep with these skills may take: the head
-- of every skill group the rep covers, compared by priority band and age. `covers` memoizes the
-- rep's skill checks across groups and queues. Returns the index entry and its lead id.
local function best_waiting(waitidx, covers)
    local best, best_rank, best_id
    local after = '-'
    while true do
        local head = redis.call('ZRANGE', waitidx, after, '+', 'BYLEX', 'LIMIT', '0', '1')[1]
        if not head then break end
        local signature, rank, lead_id = string.match(head, '^([^|]*)|(%d+)|(.+)$')
        if covers(signature) and (best_rank == nil or rank < best_rank) then
            best, best_rank, best_id = head, rank, lead_id
        end
        -- '}' sorts right after '|' and above every character of a skill name: the next group.
        after = '(' .. signature .. '}'
    end
    return best, best_rank, best_id
end

-- The reps that let the lead go (an offer rejected, timed out or returned, a release, a missed
-- first contact) or that a supervisor's re-route moved it off: it is never offered or given to
-- them again, except by a supervisor who names the rep.
local function let_go_set(record)
    local set = {}
    if type(record.let_go) == 'table' then
        for _, rep in ipairs(record.let_go) do set[rep] = true end
    end
    return set
end

local function add_let_go(record, rep)
    if type(record.let_go) ~= 'table' then record.let_go = {} end
    if not let_go_set(record)[rep] then record.let_go[#record.let_go + 1] = rep end
end

-- Can this rep take the lead in queue q now, by every filter of the queue's strategy? Returns
-- the bucket and its facts if so, else false and why not in words; `lasting` says whether waiting
-- could change that (presence, room and heartbeats come and go; membership and skills do not).
local function rep_can_take(ctx, q, rep, record)
    local channel = record.lead.channel
    if redis.call('SISMEMBER', q.members, rep) == 0 then return false, 'is not a member of the queue', true end
    if let_go_set(record)[rep] then return false, 'let this lead go or was moved off it before', true end
    local bucket = bucket_for(rep, channel)
    if not bucket then return false, 'takes no ' .. channel .. ' leads', true end
    if q.s.skills and not has_skills(rep, lead_skills(record)) then return false, 'lacks a skill it asks for', true end
    if not on_shift(rep) then return false, off_shift_words(rep) end
    if not is_present(ctx, rep) then return false, 'was not online' end
    local facts = rep_facts(rep, bucket)
    if facts.load >= facts.cap then return false, string.format('was at capacity (%d of %d)', facts.load, facts.cap) end
    if q.s.recent and not is_recent_enough(ctx, q, rep) then return false, 'had no fresh heartbeat' end
    return bucket, facts
end

-- The leads held for this rep that it can take in this bucket, best first, until it is full.
-- Held leads per rep are few (its own customers' leads while it was busy), so the whole range is read.
local function take_held(ctx, rep, bucket, assignments)
    for _, entry in ipairs(redis.call('ZRANGE', KEYS[K_HELD], '[' .. rep .. '|', '(' .. rep .. '}', 'BYLEX')) do
        local load, cap = load_and_cap(rep, bucket)
        if load >= cap then return end
        local record = load_record(string.match(entry, '([^|]+)$'))
        local q = record and ctx.by_name[record.queue]
        if q and bucket_for(rep, record.lead.channel) == bucket then
            local can, facts = rep_can_take(ctx, q, rep, record)
            if can then
                unwait(ctx, record)
                assignments[#assignments + 1] = reserve(ctx, record, q, rep, bucket, 'assigned',
                    {sticky = 'owner', owner = rep, customer = record.sticky_key, drained = true,
                     waited_ms = ctx.now - record.accepted_at, priority = record.lead.priority}, facts)
            end
        end
    end
end

-- After a rep gains room (a close, coming online, a capacity raised): hands it first the leads
-- held for it as their customer's last rep, then the best waiting leads of its queues that it may
-- take, highest priority first, oldest first, until it is full.
local function anything() return true end

local function drain_rep(ctx, rep, assignments)
    if not can_work(ctx, rep) then return end
    local covered = {}
    local function covers(signature)
        if covered[signature] == nil then covered[signature] = has_skills(rep, split(signature, '+')) end
        return covered[signature]
    end
    for _, bucket in ipairs(buckets_of(ctx, rep)) do
        local channels = bucket == '*' and ctx.channels or {bucket}
        take_held(ctx, rep, bucket, assignments)
        -- Leads this rep let go wait on for others: set aside while the drain looks further, then
        -- put back. Only leads it let go at the head of a group cost a look each.
        local passed = {}
        while true do
            local load, cap = load_and_cap(rep, bucket)
            if load >= cap then break end
            local best, best_rank, best_id, best_queue, best_channel
            for _, q in ipairs(ctx.queues) do
                if redis.call('SISMEMBER', q.members, rep) == 1 and (not q.s.recent or is_recent_enough(ctx, q, rep)) then
                    for _, channel in ipairs(channels) do
                        local entry, rank, lead_id = best_waiting(q.waitidx[channel], q.s.skills and covers or anything)
                        if entry and (best_rank == nil or rank < best_rank) then
                            best, best_rank, best_id, best_queue, best_channel = entry, rank, lead_id, q, channel
                        end
                    end
                end
            end
            if not best then break end
            local candidate = load_record(best_id)
            redis.call('ZREM', best_queue.waitidx[best_channel], best)
            redis.call('ZREM', best_queue.wait[best_channel], best_id)
            -- Both sets change only with the lead's status, so this is a guard, not a sweep: an
            -- entry without a queued lead behind it is dropped and the search runs again.
            if candidate and candidate.status == 'queued' and let_go_set(candidate)[rep] then
                passed[#passed + 1] = {best_queue, candidate}
            elseif candidate and candidate.status == 'queued' then
                local waited = ctx.now - candidate.accepted_at
                assignments[#assignments + 1] = reserve(ctx, candidate, best_queue, rep, bucket, 'assigned',
                    {drained = true, waited_ms = waited, priority = candidate.lead.priority})
            end
        end
        for _, set_aside in ipairs(passed) do wait_in(set_aside[1], set_aside[2]) end
    end
end

-- Holds a lead for its customer's last rep, which may be free soon: nobody else is offered it
-- until that rep takes it (drain_rep) or the hold runs out (move_due).
local function hold(ctx, record, q, owner, why)
    unassign(record, q, 'queued')
    record.held_for = owner
    record.held_since = ctx.now
    record.held_until = ctx.now + q.sticky_ms
    redis.call('ZADD', KEYS[K_HELD], '0', held_entry(record))
    redis.call('ZADD', KEYS[K_DUE], record.held_until, record.id)
    add_history(record, ctx.now, 'held', {rep_id = owner, queue = q.name, ['until'] = record.held_until, why = why})
    save_record(record)
end

-- Puts a lead into queue q's claim pool, best first by priority then age: nothing drains it, a
-- rep claims it (claim.lua). A pooled lead holds no unit, waits in no wait set and is never due.
local function to_pool(ctx, record, q, why, by)
    redis.call('ZREM', KEYS[K_DUE], record.id)
    redis.call('ZADD', q.pool, wait_score(record.lead.priority, record.accepted_at), record.id)
    unassign(record, q, 'pooled')
    record.waiting_since = nil
    record.pooled_at = ctx.now
    add_history(record, ctx.now, 'pooled', {queue = q.name, why = why, by = by})
    save_record(record)
    emit('lead-events', record.id, 'value', cjson.encode({type = 'lead_pooled', lead_id = record.id, queue = q.name,
                                                          why = why}))
end

-- Where a lead nobody may take now goes: a pool queue's pool, else its queue's wait sets.
local function park(ctx, record, q, by)
    if q.s.walk == 'pool' then
        to_pool(ctx, record, q, 'the queue sends every lead to its pool', by)
    else
        enqueue(ctx, record, q, by)
    end
end

-- Decides a lead in queue q as a new decision. A returning customer of a sticky queue goes back to
-- its last rep when that rep can take it now; when the rep may be free soon and the lead has not
-- been held yet (`held_ms` nil), it is held for the queue's wait; otherwise the queue's strategy
-- picks, and when nobody can take it the lead waits in the queue. `held_ms`: how long it was held
-- before (0: it has waited elsewhere and is not held again). Returns the assignment, or nil.
local function decide(ctx, record, q, facts, held_ms)
    local let_go = let_go_set(record)
    local owner = record.sticky_key and q.sticky_ms >= 0 and redis.call('HGET', KEYS[K_OWNERS], record.sticky_key)
    owner = owner and string.match(owner, '^[^|]+')
    if owner and let_go[owner] then owner = nil end
    if owner then
        local bucket, known, lasting = rep_can_take(ctx, q, owner, record)
        if bucket then
            facts.sticky, facts.owner, facts.customer = 'owner', owner, record.sticky_key
            return reserve(ctx, record, q, owner, bucket, 'assigned', facts, known)
        end
        if not lasting and held_ms == nil and q.sticky_ms > 0 then
            hold(ctx, record, q, owner, known)
            return nil
        end
        record.passed_over = {owner = owner, customer = record.sticky_key, why = known, held_ms = held_ms or 0}
    end
    local choice, why = pick_rep(ctx, q, record.lead.channel, lead_skills(record), let_go)
    if choice then
        for name, value in pairs(why) do facts[name] = value end
        return reserve(ctx, record, q, choice.rep, choice.bucket, 'assigned', facts, choice.facts)
    end
    park(ctx, record, q)
    return nil
end

-- The lead as offered to `rep` ('' for whichever rep it is offered to): its record, or nil and the
-- refusal that an answer to the offer (accept, reject) returns, having changed nothing.
local function offered_to(lead_id, rep)
    local record = load_record(lead_id)
    if not record then return nil, {'refused', 'not_found', 'unknown lead ' .. lead_id} end
    if record.status ~= 'offered' then
        return nil, {'refused', 'conflict', string.format('lead %s is %s, not offered', lead_id, record.status)}
    end
    if rep ~= '' and record.rep_id ~= rep then
        return nil, {'refused', 'conflict', string.format('lead %s is offered to another rep', lead_id)}
    end
    return record
end

-- The lead as assigned to `only_rep` ('' for any rep: a supervisor), for a step only the holder of a
-- lead takes (contact, release; `action` words the refusal): its record, or nil and the refusal,
-- having changed nothing.
local function assigned_to(lead_id, only_rep, action)
    local record = load_record(lead_id)
    if not record then return nil, {'refused', 'not_found', 'unknown lead ' .. lead_id} end
    if only_rep ~= '' and (record.status ~= 'assigned' or record.rep_id ~= only_rep) then
        return nil, {'refused', 'forbidden', string.format('lead %s is not assigned to rep %s', lead_id, only_rep)}
    end
    if record.status ~= 'assigned' then
        return nil, {'refused', 'conflict', string.format('lead %s is %s; only an assigned lead %s', lead_id,
                                                          record.status, action)}
    end
    return record
end

-- The rep lets an offered lead go (`event`: rejected, offer_timed_out, offer_returned): its unit
-- comes back, it joins the reps that let the lead go, and the lead is decided again in its queue (a
-- sticky owner that let it go is not waited for). Returns the assignment the new decision made, or nil.
local function return_offer(ctx, record, event, extra)
    local rep = record.rep_id
    release(ctx, rep, record.bucket, record.id)
    redis.call('ZREM', KEYS[K_DUE], record.id)
    add_let_go(record, rep)
    local entry = extra or {}
    entry.rep_id = rep
    add_history(record, ctx.now, event, entry)
    record.offered_at, record.offer_until, record.offer_event = nil, nil, nil
    local q = ctx.by_name[record.queue] or ctx.by_name[ctx.default_queue]
    emit('rep-events', rep, 'value', cjson.encode({type = event, rep_id = rep, lead_id = record.id}))
    return decide(ctx, record, q, {priority = record.lead.priority}, 0)
end

-- Returns every open offer of a rep that can no longer answer it (away, offline, silent).
local function return_offers_of(ctx, rep, event, extra, assignments)
    for _, member in ipairs(redis.call('ZRANGE', KEYS[K_OPEN], '[' .. rep .. '|', '(' .. rep .. '}', 'BYLEX')) do
        local record = load_record(string.sub(member, #rep + 2))
        if record and record.status == 'offered' then
            assignments[#assignments + 1] = return_offer(ctx, record, event, extra)
        end
    end
end

-- A rep's presence status set by a step: out of every ready index unless online (so nothing more is
-- routed to it), and to rep-events when it changes. Returns the status it had (online only while
-- its heartbeats are fresh).
local function set_status(ctx, rep, status, actor)
    local previous = redis.call('HGET', KEYS[K_STATUS], rep) or 'offline'
    if previous == 'online' and not is_present(ctx, rep) then previous = 'offline' end
    if status ~= 'online' then unindex_rep_everywhere(ctx, rep) end
    redis.call('HSET', KEYS[K_STATUS], rep, status)
    if previous ~= status then
        emit('rep-events', rep, 'value', cjson.encode({type = 'presence', rep_id = rep, status = status,
                                                       previous = previous, by = actor ~= '' and actor or nil}))
    end
    return previous
end

-- Applies a rep's shift state ('on' | 'off') and when it next flips (ms; 0 = never), both computed
-- by Python from the rep's schedule (dispatcher/schedule.py). Going off shift ends new work as going
-- away does: out of every ready index, and every offer it has not answered is returned and decided
-- again for someone else now (an off-shift rep is not expected to answer, and an offer waiting on it
-- would keep the lead from everyone until its timeout); the leads it already has stay with it.
-- Coming on shift indexes it (index_rep's catch_up starts it level with the others in weighted
-- queues: hours off shift earn no burst of leads) and drains waiting leads to it. A change goes to
-- rep-events. Returns true if the state changed.
local function set_shift(ctx, rep, state, next_ms, actor, assignments)
    local previous = on_shift(rep) and 'on' or 'off'
    redis.call('HSET', KEYS[K_SHIFT], rep, state)
    if next_ms > 0 then
        redis.call('ZADD', KEYS[K_SHIFT_DUE], next_ms, rep)
    else
        redis.call('ZREM', KEYS[K_SHIFT_DUE], rep)
    end
    if previous == state then return false end
    emit('rep-events', rep, 'value', cjson.encode({type = 'shift', rep_id = rep, on_shift = state == 'on',
                                                   changes_at = next_ms > 0 and next_ms or cjson.null,
                                                   by = actor ~= '' and actor or nil}))
    if state == 'off' then
        unindex_rep_everywhere(ctx, rep)
        return_offers_of(ctx, rep, 'offer_returned', {why = 'went off shift'}, assignments)
    else
        index_rep_everywhere(ctx, rep)
        drain_rep(ctx, rep, assignments)
    end
    return true
end
