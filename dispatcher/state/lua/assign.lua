-- assign: decide leads, each in turn. A returning customer of a sticky queue goes back to its last
-- rep if that rep can take it now, or is held for it for the queue's wait (lib.lua, decide);
-- otherwise the lead takes the best rep of its queue that every filter lets through, reserves a
-- unit of its capacity and records the decision; when no rep can take it, the lead waits in the
-- queue's wait set for its channel. In a queue with offers the chosen rep is offered it instead
-- (lib.lua, reserve). Each decision is atomic (so is the whole call): a worker sends a batch of
-- leads in one call, so the layout is sent, read and the library defined once for all of them.
-- KEYS: the shared layout (lib.lua), built for the channels of the leads it decides.
-- ARGV: the shared layout, then six for each lead: lead id, lead JSON (validated), source (where
--       this delivery came from, e.g. "leads/2@1041"), queue name, the rule that chose it
--       ("rule 2 (big accounts)", "default"), its customer for a sticky queue ("customer_id=c-42",
--       "" for none).
-- Returns one row per lead, in order: {kind, status ('assigned', 'offered' or 'queued'),
-- assignment or false, lead events}, where kind is 'new', 'replay' (same source seen again: a
-- redelivery after a crash, whose events the caller announces again) or 'duplicate' (the id was
-- already decided from another source: nothing changes); or {'failed', the error in words} for a
-- lead whose decision raised an error: the leads after it are still decided. The caller announces
-- the assignment and the decision's history entries, as lead events (JSON list, with their event
-- ids): this step writes no outbox event for them (lib.lua, reserve and add_history, says why).
local ARGS_PER_LEAD = 6
local ctx = parse_context()
announced_by_caller = true

local function decide_lead(lead_id, lead_json, source, queue_name, rule, sticky_key)
    local record = load_record(lead_id)
    if record and record.status ~= 'pending' then
        local kind = record.source == source and 'replay' or 'duplicate'
        -- A duplicate announces nothing; a replay announces the decision's events again, same ids.
        local events = kind == 'replay' and decision_events(record) or '[]'
        -- An accepted offer was announced by its accept (through the outbox), not by this decision.
        if record.status == 'assigned' and not (record.facts and record.facts.offered_at) then
            return {kind, record.status, {record.id, record.rep_id, record.queue, record.strategy,
                                          record.assigned_at, cjson.encode(record.facts), record.accepted_at}, events}
        end
        return {kind, record.status, false, events}
    end
    if not record then
        record = {id = lead_id, accepted_at = ctx.now, history = {}}
        add_history(record, ctx.now, 'accepted', {})
    end
    with_body(record, lead_json)
    record.source = source
    record.rule = rule
    if sticky_key ~= '' then record.sticky_key = sticky_key end

    local assignment = decide(ctx, record, ctx.by_name[queue_name], {priority = record.lead.priority})
    -- Offered leads are announced when accepted (accept_offer.lua); queued ones when assigned.
    return {'new', record.status, assignment or false, decision_events(record)}
end

local rows = {}
for a = ctx.argi, #ARGV, ARGS_PER_LEAD do
    -- Each lead is decided at its own time, as it would be in a call of its own.
    ctx.now = now_ms()
    local ok, row = pcall(decide_lead, unpack(ARGV, a, a + ARGS_PER_LEAD - 1))
    if not ok then
        -- A Redis command's error comes as a table; the caller reads its words (OOM, READONLY: Redis
        -- cannot take writes now, and the whole batch is retried) as it would a call's own error.
        row = {'failed', type(row) == 'table' and row.err or tostring(row)}
    end
    rows[#rows + 1] = row
end
return rows
