-- shift: applies a rep's shift state at a boundary of its schedule (lib.lua set_shift): off shift it
-- leaves every ready index and its unanswered offers are returned; on shift it is indexed, level
-- with the others in weighted queues, and waiting leads drain to it. Python computed the state and
-- the next boundary from the profile it read (Lua has no time zones); they are applied only if the
-- rep's boundary and profile are still the ones it read: workers that all find the same boundary
-- due apply it once, and a profile changed meanwhile (upsert_rep applied its own state) wins.
-- KEYS: the shared layout (lib.lua), all channels.
-- ARGV: the shared layout, then rep id, the boundary read (ms, its score in rep:shift_due), SHA1 of
--       the profile JSON read, state ('on' | 'off'), next boundary (ms; 0 = never).
-- Returns {'stale'} | {'ok', 1 if the state changed else 0, drained or re-decided assignments}
local ctx = parse_context()
local rep, read_ms, profile_sha = ARGV[ctx.argi], ARGV[ctx.argi + 1], ARGV[ctx.argi + 2]
local state, next_ms = ARGV[ctx.argi + 3], tonumber(ARGV[ctx.argi + 4])

local due = redis.call('ZSCORE', KEYS[K_SHIFT_DUE], rep)
local profile = redis.call('HGET', KEYS[K_PROFILES], rep)
if not due or tonumber(due) ~= tonumber(read_ms) or not profile or redis.sha1hex(profile) ~= profile_sha then
    return {'stale'}
end
local assignments = {}
local changed = set_shift(ctx, rep, state, next_ms, 'schedule', assignments)
return {'ok', changed and 1 or 0, assignments}
