"""Every change of live state: each one registered Lua script (dispatcher/state/lua), run
atomically; this module lays out the script's own arguments and reads its answer."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from redis._parsers import BaseParser
from redis.exceptions import NoScriptError, ResponseError

from dispatcher.routing import Queue, Route, Routing
from dispatcher.schedule import shift_at
from dispatcher.state.layout import Layout, is_stale, is_unavailable
from dispatcher.state.results import (
    Assignment,
    Decision,
    DueMoved,
    Outcome,
    RoutingChange,
    RoutingRefused,
    ShiftsApplied,
    lead_event,
)

# Leads one decision script takes (lua/assign.lua): the layout is sent and read, and the library
# defined, once a call, so a few dozen leads share that cost; and one call holds Redis (every
# worker's steps and every HTTP request's) for a few milliseconds at most.
LEADS_PER_SCRIPT = 32
# Preparing a routing change reads state that may move meanwhile; the step is prepared again.
APPLY_ATTEMPTS = 20


def wait_pool_s(queue: Queue) -> float | None:
    return queue.pool.after_s if queue.pool else None


class Writes(Layout):
    async def accept(self, lead: Mapping[str, Any]) -> str:
        """Records a lead as pending: 'new', or the status of the lead already known by its id."""
        return await self._scripts["accept"](keys=self.keys.fixed(), args=[lead["id"], orjson.dumps(lead)])

    async def assign(self, lead: Mapping[str, Any], source: str) -> Decision:
        (decision,) = await self.assign_many([(lead, source)])
        return decision

    async def assign_many(self, deliveries: Sequence[tuple[Mapping[str, Any], str]]) -> list[Decision]:
        """Route each validated lead (the routing in hand picks its queue and rule), then decide it:
        several decisions in one round trip, LEADS_PER_SCRIPT to a script, each atomic, in order.

        One lead's failure is that lead's alone: it comes back as a 'failed' decision and the rest
        are decided. Leads whose step met a routing change are decided again under the new one.
        Errors that say Redis cannot take writes now (connection, READONLY, OOM) are raised, for
        the caller to retry the batch: every step is idempotent by lead id."""
        decisions: dict[int, Decision] = {}
        todo = list(range(len(deliveries)))
        while todo:
            routes = {i: self.routing.route(deliveries[i][0]) for i in todo}
            rows = await self._evalsha_batch([(deliveries[i], routes[i]) for i in todo])
            stale = []
            for i, row in zip(todo, rows, strict=True):
                lead, _ = deliveries[i]
                if is_stale(row):
                    stale.append(i)
                elif isinstance(row, ResponseError):
                    if is_unavailable(row):
                        raise row
                    decisions[i] = Decision(lead["id"], "failed", "", routes[i].queue, error=str(row))
                else:
                    assignment = Assignment.from_script(row[2]) if row[2] else None
                    decisions[i] = Decision(lead["id"], row[0], row[1], routes[i].queue, assignment,
                                            lead_events=tuple(lead_event(e, assignment) for e in orjson.loads(row[3])))
            if stale:
                await self.adopt_routing()
            todo = stale
        return [decisions[i] for i in range(len(deliveries))]

    async def _evalsha_batch(self, steps: Sequence[tuple[tuple[Mapping[str, Any], str], Route]]) -> list[Any]:
        """One row per step, in order: its lead's row from the script, or the error that stopped
        its decision (its own, or that of the call that carried it)."""
        script = self._scripts["assign"]
        calls = [steps[first:first + LEADS_PER_SCRIPT] for first in range(0, len(steps), LEADS_PER_SCRIPT)]
        for attempt in (1, 2):
            # EVALSHA straight into the pipeline: redis-py's script-in-pipeline path asks SCRIPT
            # EXISTS first, a second round trip for every batch.
            pipe = self.client.pipeline(transaction=False)
            for call in calls:
                keys, args = self._layout(tuple(sorted({lead["channel"] for (lead, _), _ in call})))
                lead_args: list[Any] = []
                for (lead, source), route in call:
                    lead_args += (lead["id"], orjson.dumps(lead), source, route.queue, route.rule, route.sticky_key)
                pipe.evalsha(script.sha, len(keys), *keys, *args, *lead_args)
            replies = await pipe.execute(raise_on_error=False)
            if not any(isinstance(reply, NoScriptError) for reply in replies):
                break
            if attempt == 2:
                raise next(reply for reply in replies if isinstance(reply, NoScriptError))
            # Redis lost its script cache (restart, SCRIPT FLUSH): no step of the batch ran.
            await self.client.script_load(script.script)
        rows: list[Any] = []
        for call, reply in zip(calls, replies, strict=True):
            if isinstance(reply, Exception):
                rows += [reply] * len(call)
            else:
                # A lead's own error, in words: parsed as redis-py parses a reply's, so OOM and
                # READONLY read as Redis being unable to take writes, as they would from a call.
                rows += [BaseParser.parse_error(row[1]) if row[0] == "failed" else row for row in reply]
        return rows

    async def close(self, lead_id: str, outcome: str, *, actor: str = "", only_rep: str | None = None) -> Outcome:
        """`actor` names who closed it (the caller's role and identity), kept in the lead's history;
        with `only_rep`, the lead is closed only if it is assigned to that rep at that moment."""
        row = await self._step("close", lambda: (lead_id, outcome, actor, only_rep or ""))
        if row[0] == "unknown":
            return Outcome("not_found", f"unknown lead {lead_id}")
        if row[0] == "not_theirs":
            return Outcome("forbidden", f"lead {lead_id} is not assigned to rep {only_rep}")
        if row[0] == "already_closed":
            return Outcome("ok", "already closed")
        return Outcome("ok", f"closed (was {row[1]})", tuple(Assignment.from_script(r) for r in row[3]))

    async def reassign(self, lead_id: str, rep_id: str | None, *, actor: str = "") -> Outcome:
        row = await self._step("reassign", lambda: (lead_id, rep_id or "", self.routing.default_queue, actor))
        if row[0] == "refused":
            return Outcome(row[1], row[2])
        moved = (Assignment.from_script(row[2], reassigned=True),) if row[2] else ()
        return Outcome("ok", row[1], moved + tuple(Assignment.from_script(r) for r in row[3]))

    async def claim(self, lead_id: str, rep_id: str, *, actor: str = "") -> Outcome:
        """The rep takes the lead from its queue's claim pool (lua/claim.lua): of any number of
        claims at once, one wins; the others are refused ('conflict') and change nothing."""
        row = await self._step("claim", lambda: (lead_id, rep_id, actor))
        if row[0] == "refused":
            return Outcome(row[1], row[2])
        return Outcome("ok", "claimed", (Assignment.from_script(row[1]),))

    async def release(self, lead_id: str, reason: str, *, actor: str = "", only_rep: str | None = None) -> Outcome:
        """Hands an assigned lead back: decided again in its queue without the reps that let it go."""
        row = await self._step("release", lambda: (lead_id, reason, actor, only_rep or "", self.routing.default_queue))
        if row[0] == "refused":
            return Outcome(row[1], row[2])
        moved = (Assignment.from_script(row[2], reassigned=True),) if row[2] else ()
        return Outcome("ok", f"released ({row[1]})", moved + tuple(Assignment.from_script(r) for r in row[3]))

    async def contact(self, lead_id: str, *, actor: str = "", only_rep: str | None = None) -> Outcome:
        """Records the first contact of an assigned lead, which stops its queue's SLA clock."""
        row = await self._step("contact", lambda: (lead_id, actor, only_rep or ""))
        if row[0] == "refused":
            return Outcome(row[1], row[2])
        return Outcome("ok", f"{row[1]} {int(row[2]) / 1000:.1f} s after it was assigned")

    async def move_due(self, limit: int = 200) -> DueMoved:
        """Takes up to `limit` leads whose hold for their customer's last rep ran out, whose overflow
        or move to the pool fell due, whose offer ran out or lost its rep, or whose first contact is
        overdue (lua/move_due.lua). Safe to run on every worker at once."""
        row = await self._step("move_due", lambda: (limit,))
        return DueMoved(tuple(Assignment.from_script(r) for r in row[0]), int(row[1]), int(row[2]), int(row[3]),
                        int(row[4]), int(row[5]), tuple(tuple(label.split("|", 1)) for label in row[6]))

    async def apply_shifts(self, limit: int = 200) -> ShiftsApplied:
        """Reps whose schedule flips their shift state by now, up to `limit`: the state and the next
        boundary computed here from the profile, applied by lua/shift.lua only if the boundary and
        the profile are still the ones read, so workers running this at once apply each boundary once."""
        now = await self.now_ms()
        due = await self.client.zrangebyscore(self.keys.rep_shift_due, "-inf", now, start=0, num=limit + 1,
                                              withscores=True)
        reps = due[:limit]
        profiles = await self.client.hmget(self.keys.rep_profiles, [rep for rep, _ in reps]) if reps else []
        changed, assignments = [], []
        for (rep, boundary), raw in zip(reps, profiles, strict=True):
            if raw is None:
                # A rep without a profile has no schedule to follow: forget when it was due.
                await self.client.zrem(self.keys.rep_shift_due, rep)
                continue
            on, changes_at = shift_at(orjson.loads(raw).get("schedule"), now)
            sha = hashlib.sha1(raw.encode()).hexdigest()
            args = (rep, int(boundary), sha, "on" if on else "off", changes_at or 0)
            row = await self._step("shift", lambda args=args: args)
            if row[0] == "ok":
                if int(row[1]):
                    changed.append((rep, on))
                assignments.extend(Assignment.from_script(r) for r in row[2])
        return ShiftsApplied(tuple(changed), tuple(assignments), len(due) > limit)

    async def accept_offer(self, lead_id: str, rep_id: str | None, *, actor: str = "") -> Outcome:
        """The rep the lead is offered to takes it; `rep_id` None lets a supervisor accept for that rep."""
        row = await self._step("accept_offer", lambda: (lead_id, rep_id or "", actor))
        if row[0] == "refused":
            return Outcome(row[1], row[2])
        return Outcome("ok", "assigned", (Assignment.from_script(row[1]),))

    async def reject_offer(self, lead_id: str, rep_id: str | None, *, actor: str = "") -> Outcome:
        """The rep the lead is offered to turns it down: the lead is decided again for someone else.
        `detail` is the lead's status after; `assignments` every lead that went to a rep as a result."""
        row = await self._step("reject_offer", lambda: (lead_id, rep_id or "", actor))
        if row[0] == "refused":
            return Outcome(row[1], row[2])
        return Outcome("ok", row[1], tuple(Assignment.from_script(r) for r in row[2]))

    async def expire_closed(self, retention_s: float, limit: int = 1000) -> int:
        """Forgets up to `limit` leads closed more than `retention_s` ago; returns how many."""
        return await self._scripts["expire_closed"](keys=self.keys.fixed(), args=[int(retention_s * 1000), limit])

    async def forget_rep_history(self, retention_s: float, limit: int = 1000) -> tuple[int, int]:
        """Drops rep log entries older than `retention_s`, visiting up to `limit` reps; returns
        (reps visited, entries dropped)."""
        visited, dropped = await self._scripts["forget_rep_log"](keys=self.keys.fixed(),
                                                                 args=[int(retention_s * 1000), limit])
        return int(visited), int(dropped)

    async def forget_assignments(self, retention_s: int) -> int:
        """Drops the assignment log's entries older than `retention_s` (Redis clock); returns how
        many. One command, so no script: the log is only ever appended to by the scripts."""
        cutoff_ms = await self.now_ms() - retention_s * 1000
        return await self.client.zremrangebyscore(self.keys.assignment_log, "-inf", f"({cutoff_ms}")



    async def set_presence(self, rep_id: str, status: str, *, actor: str = "") -> Outcome:
        row = await self._step("presence", lambda: (rep_id, status, actor))
        if row[0] == "unknown":
            return Outcome("not_found", f"unknown rep {rep_id}; create it with PUT /v1/reps/{rep_id} first")
        return Outcome("ok", row[1], tuple(Assignment.from_script(r) for r in row[2]))

    async def upsert_rep(self, rep_id: str, profile: Mapping[str, Any], *, actor: str = "") -> Outcome:
        """`profile` as models.usable_profile gives it (a schedule already checked): its shift state
        is computed here, at Redis's clock, and applied in the same step."""
        on, changes_at = shift_at(profile.get("schedule"), await self.now_ms())
        capacity = profile["capacity"]
        capacity_spec = f"*={capacity}" if isinstance(capacity, int) else ",".join(f"{c}={n}" for c, n in capacity.items())
        skills_spec = ",".join(f"{skill}={level}" for skill, level in profile.get("skills", {}).items())
        attributes = profile.get("attributes") or {}
        rank, weight = attributes.get("rank", 0), attributes.get("weight", 1)
        row = await self._step("upsert_rep", lambda: (rep_id, orjson.dumps(profile), capacity_spec, skills_spec, rank,
                                                      ",".join(self.routing.queues_for(profile)), actor, weight,
                                                      "on" if on else "off", changes_at or 0))
        if row[0] == "conflict":
            return Outcome("conflict", row[1])
        return Outcome("ok", row[1], tuple(Assignment.from_script(r) for r in row[2]))

    # --- routing ---------------------------------------------------------------------------
    async def apply_routing(self, routing: Routing, *, by: str = "") -> RoutingChange:
        """Makes `routing` the routing in force for every worker, in one atomic step, unless it
        already is. Raises RoutingRefused, changing nothing, when it cannot be applied safely."""
        for _ in range(APPLY_ATTEMPTS):
            await self.adopt_routing()
            if self.routing_version != "0" and self.routing.fingerprint == routing.fingerprint:
                return RoutingChange(self.routing_version, applied=False)
            try:
                return await self._apply_routing_once(self.routing, routing, by)
            except ResponseError as exc:
                if not is_stale(exc):
                    raise
        raise RuntimeError(f"the routing kept changing under {APPLY_ATTEMPTS} attempts to apply {routing.source}")

    async def _apply_routing_once(self, old: Routing, new: Routing, by: str) -> RoutingChange:
        """`old` is the routing in force, or before the first is applied the routing in hand, which
        the steps so far were built from."""
        k = self.keys
        snapshot = self.client.pipeline(transaction=True)
        snapshot.hgetall(k.rep_profiles).get(k.roster_version)
        raw_profiles, roster = await snapshot.execute()
        profiles = {rep: orjson.loads(raw) for rep, raw in raw_profiles.items()}
        reasons = [
            f"rep {rep}'s capacity names channel {channel}, which this routing drops; change the rep's capacity first"
            for rep, profile in sorted(profiles.items()) if isinstance(profile["capacity"], dict)
            for channel in profile["capacity"] if channel not in new.channels
        ]
        if reasons:
            raise RoutingRefused(reasons)
        kept = {q.name for q in new.queues}
        removed = [q.name for q in old.queues if q.name not in kept]
        dropped_channels = [c for c in old.channels if c not in new.channels]
        waiting_ids = []
        if removed:
            pipe = self.client.pipeline(transaction=False)
            for queue in removed:
                for channel in old.channels:
                    pipe.zrange(k.queue_wait(queue, channel), 0, -1)
            waiting_ids = [lead_id for ids in await pipe.execute() for lead_id in ids]
            # Leads held for a rep wait in no queue's wait set; the few held in removed queues are found by their records.
            held_ids = [entry.rsplit("|", 1)[1] for entry in await self.client.zrange(k.held_leads, 0, -1)]
            held = await self.client.hmget(k.leads, held_ids) if held_ids else []
            waiting_ids += [lead_id for lead_id, raw in zip(held_ids, held, strict=True)
                            if raw and orjson.loads(raw).get("queue") in removed]
        records = await self.client.hmget(k.leads, waiting_ids) if waiting_ids else []
        stranded = []
        for lead_id, raw in zip(waiting_ids, records, strict=True):
            lead = orjson.loads(orjson.loads(raw)["body"]) if raw else {}
            stranded.extend((lead_id, new.queue_for(lead) if lead.get("channel") in new.channels else ""))
        # A waiting lead is due by its queue's overflow and pool times (lib.lua, wait_due).
        overflow_changed = [queue.name for queue in new.queues if queue.name in old.by_name and
                            (old.by_name[queue.name].overflow, wait_pool_s(old.by_name[queue.name]))
                            != (queue.overflow, wait_pool_s(queue))]
        base_keys, base_args = self._layout_for(new, self.routing_version)
        keys = [*base_keys, k.routing_history]
        for queue in removed:
            keys.extend(self._queue_keys(queue, old.channels)[:3])
            for channel in old.channels:
                keys.extend((k.queue_ready(queue, channel), k.queue_wait(queue, channel), k.queue_wait_index(queue, channel)))
            keys.append(k.queue_pool(queue))
        dropped_labels = []
        for queue in kept & {q.name for q in old.queues}:
            for channel in dropped_channels:
                keys.extend((k.queue_ready(queue, channel), k.queue_wait(queue, channel), k.queue_wait_index(queue, channel)))
                dropped_labels.append(f"{queue}|{channel}")
        members_args: list[Any] = []
        for queue in new.queues:
            members = [rep for rep, profile in profiles.items() if queue.admits(profile)]
            members_args.extend((len(members), *members))
        args = [*base_args, new.spec.model_dump_json(), new.text, new.fingerprint, new.source, by, roster or "0",
                ",".join(old.channels), len(removed), *removed, len(dropped_labels), *dropped_labels,
                *members_args, len(stranded) // 2, *stranded, len(overflow_changed), *overflow_changed]
        row = await self._scripts["apply_routing"](keys=keys, args=args)
        if row[0] == "refused":
            raise RoutingRefused(row[1:])
        self.use_routing(new, row[1])
        return RoutingChange(row[1], applied=True, assignments=tuple(Assignment.from_script(r) for r in row[2]),
                             rerouted=int(row[3]))

