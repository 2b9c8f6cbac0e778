-- upsert_rep: create or replace a rep's profile, capacity, skills, rank, weight and queue membership in
-- one step, then re-index it and drain waiting leads to any room the change made. A change that
-- would leave open leads above capacity is refused, so the capacity invariant holds at all times.
-- KEYS: the shared layout (lib.lua), all channels.
-- ARGV: the shared layout, then rep id, profile JSON, capacity ("*=3" or "web=2,chat=4"),
--       skills ("spanish=7,billing=3"), rank, names of the queues the rep belongs to (comma-separated),
--       actor ('' when unnamed), weight (its share in weighted queues), shift state ('on' | 'off') and
--       when it next flips (ms; 0 = never), computed by Python from the profile's schedule at the time
--       of the call (no schedule: 'on', 0), applied in this step (lib.lua set_shift).
-- Every accepted change moves the roster version on (apply_routing builds memberships from a
-- roster it read earlier and must know it is still that roster) and goes to rep-events.
-- Returns {'conflict', message} | {'ok', 'created' | 'updated', drained or re-decided assignments}
local ctx = parse_context()
local rep, profile_json = ARGV[ctx.argi], ARGV[ctx.argi + 1]
local capacity_spec, skills_spec = ARGV[ctx.argi + 2], ARGV[ctx.argi + 3]
local rank, queue_names, actor = ARGV[ctx.argi + 4], ARGV[ctx.argi + 5], ARGV[ctx.argi + 6]
local weight, shift, shift_next = ARGV[ctx.argi + 7], ARGV[ctx.argi + 8], tonumber(ARGV[ctx.argi + 9])

local function parse_pairs(spec)
    local pairs_found = {}
    for _, item in ipairs(split(spec, ',')) do
        local name, value = string.match(item, '^(.+)=(%d+)$')
        pairs_found[#pairs_found + 1] = {name, tonumber(value)}
    end
    return pairs_found
end

local new_capacity, new_cap_by_bucket = parse_pairs(capacity_spec), {}
for _, pair in ipairs(new_capacity) do new_cap_by_bucket[pair[1]] = pair[2] end
local old_buckets = buckets_of(ctx, rep)
for _, bucket in ipairs(old_buckets) do
    local load = load_and_cap(rep, bucket)
    local new_cap = new_cap_by_bucket[bucket]
    if load > 0 and (new_cap == nil or new_cap < load) then
        local where = bucket == '*' and 'in all' or ('on channel ' .. bucket)
        return {'conflict', string.format('rep %s has %d open leads %s; the new capacity would hold %s. ' ..
            'Close or reassign leads first.', rep, load, where, new_cap and tostring(new_cap) or 'none of them')}
    end
end

local existed = redis.call('HEXISTS', KEYS[K_PROFILES], rep) == 1
unindex_rep_everywhere(ctx, rep)
for _, bucket in ipairs(old_buckets) do
    redis.call('HDEL', KEYS[K_CAP], rep .. '|' .. bucket)
    if not new_cap_by_bucket[bucket] then redis.call('HDEL', KEYS[K_LOAD], rep .. '|' .. bucket) end
end
for _, pair in ipairs(new_capacity) do redis.call('HSET', KEYS[K_CAP], rep .. '|' .. pair[1], pair[2]) end

if existed then
    local old_profile = cjson.decode(redis.call('HGET', KEYS[K_PROFILES], rep))
    if type(old_profile.skills) == 'table' then
        for skill, _ in pairs(old_profile.skills) do redis.call('HDEL', KEYS[K_SKILLS], rep .. '|' .. skill) end
    end
else
    redis.call('HSETNX', KEYS[K_STATUS], rep, 'offline')
    redis.call('HSETNX', KEYS[K_LAST], rep, 0)
end
for _, pair in ipairs(parse_pairs(skills_spec)) do redis.call('HSET', KEYS[K_SKILLS], rep .. '|' .. pair[1], pair[2]) end
redis.call('HSET', KEYS[K_RANK], rep, rank)
redis.call('HSET', KEYS[K_WEIGHT], rep, weight)
redis.call('HSET', KEYS[K_PROFILES], rep, profile_json)

local member_of = {}
for _, name in ipairs(split(queue_names, ',')) do member_of[name] = true end
for _, q in ipairs(ctx.queues) do
    if member_of[q.name] then redis.call('SADD', q.members, rep) else redis.call('SREM', q.members, rep) end
end

redis.call('INCR', KEYS[K_ROSTER])
-- The profile as given, not decoded and encoded again: cjson would turn an empty list into {}.
emit('rep-events', rep, 'value', string.format('{"type":"profile","rep_id":%s,"by":%s,"profile":%s}',
                                               cjson.encode(rep), actor ~= '' and cjson.encode(actor) or 'null', profile_json))
local drained = {}
-- Out of every index since the unindex above; going off shift returns its offers.
set_shift(ctx, rep, shift, shift_next, actor, drained)
index_rep_everywhere(ctx, rep)
drain_rep(ctx, rep, drained)
return {'ok', existed and 'updated' or 'created', drained}
