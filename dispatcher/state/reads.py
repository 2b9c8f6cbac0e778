"""What the API and the live page read: reps, leads, queues, routing, recent assignments. Reads
change nothing, so they are plain commands, pipelined where one answer needs several."""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from dispatcher import fairness
from dispatcher.state.layout import Layout
from dispatcher.state.results import Assignment, iso_ms, lead_event

# Width of one priority band in a wait set's score (lib.lua's PRIORITY_SPAN).
WAIT_BAND = 10**13


def capacity_buckets(capacity: int | Mapping[str, int]) -> list[str]:
    """The load buckets a capacity names: '*' for one number for all channels, else its channels
    (as bucket_for in lua/lib.lua spends them)."""
    return ["*"] if isinstance(capacity, int) else list(capacity)


class Reads(Layout):
    async def open_leads_of(self, rep_id: str) -> list[str] | None:
        """The rep's open leads, or None for an unknown rep; one round trip (reps poll this)."""
        pipe = self.client.pipeline(transaction=False)
        # "|" never occurs in an id and "}" is the byte after it: the range holds exactly this rep.
        pipe.hexists(self.keys.rep_profiles, rep_id)
        pipe.zrange(self.keys.open_leads, f"[{rep_id}|", f"({rep_id}}}", bylex=True)
        known, members = await pipe.execute()
        return [member.split("|", 1)[1] for member in members] if known else None

    async def rep_history(self, rep_id: str, limit: int, before: str | None = None
                          ) -> tuple[list[dict[str, Any]], str | None] | None:
        """The rep's lead events, newest first, at most `limit`, older than the cursor `before`; with
        the cursor of the next page (None at the end). None for an unknown rep. One round trip."""
        # A member is "rep|time|event id|JSON": the cursor "time|event id" plus "|" sorts above the
        # member it came from and below every later one, so each page starts right after the last.
        upper = f"({rep_id}|{before}|" if before is not None else f"({rep_id}}}"
        pipe = self.client.pipeline(transaction=False)
        pipe.hexists(self.keys.rep_profiles, rep_id)
        pipe.zrange(self.keys.rep_log, upper, f"[{rep_id}|", desc=True, bylex=True, offset=0, num=limit + 1)
        known, members = await pipe.execute()
        if not known:
            return None
        events = []
        for member in members[:limit]:
            event = lead_event(orjson.loads(member.split("|", 3)[3]))
            events.append({**event, "at": iso_ms(event["at"])})
        more = len(members) > limit
        return events, ("|".join(members[limit - 1].split("|", 3)[1:3]) if more else None)

    async def pool(self, queues: Sequence[str], rep_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The pooled leads of these queues, best first in each (priority, then age), at most `limit`
        in all. With `rep_id`, only the queues it is a member of and the leads it could take by
        channel and skills: what that rep may claim (room and presence are checked by the claim)."""
        routed = [self.routing.by_name[name] for name in queues if name in self.routing.by_name]
        profile = None
        if rep_id is not None:
            pipe = self.client.pipeline(transaction=False)
            pipe.hget(self.keys.rep_profiles, rep_id)
            for queue in routed:
                pipe.sismember(self.keys.queue_members(queue.name), rep_id)
            raw, *member = await pipe.execute()
            if raw is None:
                return []
            profile = orjson.loads(raw)
            routed = [queue for queue, is_member in zip(routed, member, strict=True) if is_member]
        pipe = self.client.pipeline(transaction=False)
        for queue in routed:
            pipe.zrange(self.keys.queue_pool(queue.name), 0, limit - 1)
        ids = [lead_id for found in await pipe.execute() for lead_id in found]
        records = await self.client.hmget(self.keys.leads, ids) if ids else []
        leads = [orjson.loads(raw) for raw in records if raw is not None]
        if profile is not None:
            capacity, skills = profile["capacity"], profile.get("skills") or {}
            leads = [record for record in leads
                     if (isinstance(capacity, int) or record["lead"]["channel"] in capacity)
                     and all(skill in skills for skill in record["lead"].get("skills") or [])]
        return leads[:limit]

    async def lead(self, lead_id: str) -> dict[str, Any] | None:
        raw = await self.client.hget(self.keys.leads, lead_id)
        return None if raw is None else orjson.loads(raw)

    async def routing_in_force(self) -> dict[str, Any] | None:
        """The routing every step is built for, as applied: version, text as written, where it came
        from, when and by whom; None before the first is applied."""
        fields = await self.client.hgetall(self.keys.routing)
        if not fields:
            return None
        return {"version": fields["version"], "source": fields["source"], "fingerprint": fields["fingerprint"],
                "applied_at": iso_ms(int(fields["at"])), "by": fields["by"] or None, "text": fields.get("text", ""),
                "spec": orjson.loads(fields["spec"])}

    async def routing_history(self, limit: int = 100) -> list[dict[str, Any]]:
        """The routings applied, newest first: version, fingerprint, source, when, by whom."""
        entries = [orjson.loads(raw) for raw in await self.client.lrange(self.keys.routing_history, 0, limit - 1)]
        return [{"version": entry["version"], "fingerprint": entry["fingerprint"], "source": entry["source"],
                 "applied_at": iso_ms(entry["at"]), "by": entry.get("by")} for entry in entries]

    async def reps(self, rep_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Rep objects as the API shows them: profile, effective status, load shaped like capacity,
        shift state and when it next changes."""
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        if rep_ids is None:
            pipe.hgetall(k.rep_profiles).hgetall(k.rep_status).zrange(k.rep_seen, 0, -1, withscores=True)
            pipe.hgetall(k.rep_load).hgetall(k.rep_last_assigned).time()
            pipe.hgetall(k.rep_shift).zrange(k.rep_shift_due, 0, -1, withscores=True)
            profiles_raw, status, seen, load, last, now, shift, shift_due = await pipe.execute()
            changes = dict(shift_due)
            profiles = {rep_id: orjson.loads(raw) for rep_id, raw in profiles_raw.items()}
        else:
            pipe.hmget(k.rep_profiles, rep_ids).hmget(k.rep_status, rep_ids)
            pipe.zmscore(k.rep_seen, rep_ids).hmget(k.rep_last_assigned, rep_ids).time()
            pipe.hmget(k.rep_shift, rep_ids).zmscore(k.rep_shift_due, rep_ids)
            raw_list, status_list, seen_list, last_list, now, shift_list, due_list = await pipe.execute()
            shift = dict(zip(rep_ids, shift_list, strict=True))
            changes = dict(zip(rep_ids, due_list, strict=True))
            profiles = {r: orjson.loads(p) for r, p in zip(rep_ids, raw_list, strict=True) if p is not None}
            # Only these reps' load fields, named by their capacity: the whole load hash holds
            # every rep's, and a rep's own requests (presence, its leads) must not cost O(roster).
            fields = [f"{rep_id}|{bucket}" for rep_id, profile in profiles.items()
                      for bucket in capacity_buckets(profile["capacity"])]
            load = dict(zip(fields, await self.client.hmget(k.rep_load, fields), strict=True)) if fields else {}
            status = dict(zip(rep_ids, status_list, strict=True))
            seen = [(r, s) for r, s in zip(rep_ids, seen_list, strict=True) if s is not None]
            last = dict(zip(rep_ids, last_list, strict=True))
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        seen_at = dict(seen)
        reps = []
        for rep_id, profile in profiles.items():
            capacity = profile["capacity"]
            heard = seen_at.get(rep_id)
            effective = status.get(rep_id) or "offline"
            if effective == "online" and (heard is None or heard < now_ms - self.presence_ttl_ms):
                effective = "offline"
            if isinstance(capacity, int):
                rep_load: int | dict[str, int] = int(load.get(f"{rep_id}|*") or 0)
            else:
                rep_load = {channel: int(load.get(f"{rep_id}|{channel}") or 0) for channel in capacity}
            last_assigned = int(last.get(rep_id) or 0)
            reps.append({
                "id": rep_id,
                **profile,
                "status": effective,
                "load": rep_load,
                "capacity": capacity,
                "queues": self.routing.queues_for(profile),
                "last_seen_at": iso_ms(heard) if heard else None,
                "last_assigned_at": iso_ms(last_assigned) if last_assigned else None,
                # As the scripts route by it: no entry is a rep without a schedule, always on shift.
                "on_shift": shift.get(rep_id) != "off",
                "shift_changes_at": iso_ms(changes[rep_id]) if changes.get(rep_id) else None,
            })
        return sorted(reps, key=lambda rep: rep["id"])

    async def queue_figures(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Per queue: leads waiting, how long the oldest has waited, members, leads offered (awaiting
        an accept), pooled (in the claim pool), and SLA breaches since the workspace began; and those
        breaches per rep. One pipeline of counts: nothing here grows with the leads."""
        k, now_ms = self.keys, await self.now_ms()
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(k.breach_counts)
        for queue in self.routing.queues:
            pipe.scard(k.queue_members(queue.name))
            # '}' sorts after '|' and after every character of a name: the end of this queue's range.
            pipe.zlexcount(k.offers, f"[{queue.name}|", f"({queue.name}}}")
            pipe.zcard(k.queue_pool(queue.name))
            for channel in self.routing.channels:
                wait = k.queue_wait(queue.name, channel)
                pipe.zcard(wait)
                # The score is (9 - priority) * 1e13 + accepted ms: the oldest lead is the head of
                # one of the ten priority bands.
                for band in range(10):
                    pipe.zrangebyscore(wait, band * WAIT_BAND, (band + 1) * WAIT_BAND - 1, start=0, num=1,
                                       withscores=True)
        replies = iter(await pipe.execute())
        breaches_by_queue: collections.Counter[str] = collections.Counter()
        breaches_by_rep: collections.Counter[str] = collections.Counter()
        for field, count in next(replies).items():
            queue_name, _, rep = field.partition("|")
            breaches_by_queue[queue_name] += int(count)
            breaches_by_rep[rep] += int(count)
        figures = []
        for queue in self.routing.queues:
            members, offered, pooled = next(replies), next(replies), next(replies)
            waiting, oldest_accepted = 0, None
            for _ in self.routing.channels:
                waiting += next(replies)
                for _ in range(10):
                    for _, score in next(replies):
                        accepted = int(score) % WAIT_BAND
                        oldest_accepted = accepted if oldest_accepted is None else min(oldest_accepted, accepted)
            figures.append({
                "name": queue.name,
                "strategy": queue.strategy,
                "members": members,
                "waiting": waiting,
                "oldest_wait_s": (now_ms - oldest_accepted) / 1000 if oldest_accepted is not None else 0.0,
                "offered": offered,
                "pooled": pooled,
                "breaches": breaches_by_queue[queue.name],
            })
        return figures, dict(breaches_by_rep)

    async def fairness(self, window_s: int) -> list[dict[str, Any]]:
        """Per queue of the routing in hand, over the last `window_s`: assignments per rep (every
        member now, with 0 when it got none, and any rep that got leads there in the window),
        spread and Gini. Reads the window of the assignment log, so its cost grows with the
        assignments in the window (and the queues' members), not with the log's retention."""
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.time()
        for queue in self.routing.queues:
            pipe.smembers(k.queue_members(queue.name))
        now, *members = await pipe.execute()
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        counts: dict[str, dict[str, int]] = {queue.name: dict.fromkeys(sorted(found), 0)
                                             for queue, found in zip(self.routing.queues, members, strict=True)}
        # Exclusive start: an assignment exactly window_s old is outside the window.
        for entry in await self.client.zrangebyscore(k.assignment_log, f"({now_ms - window_s * 1000}", "+inf"):
            queue, rep, _ = entry.split("|", 2)
            if queue in counts:
                counts[queue][rep] = counts[queue].get(rep, 0) + 1
        figures = []
        for queue in self.routing.queues:
            per_rep = dict(sorted(counts[queue.name].items()))
            values = list(per_rep.values())
            figures.append({"queue": queue.name, "strategy": queue.strategy, "window_s": window_s,
                            "assignments": sum(values), "reps": per_rep, "spread": fairness.spread(values),
                            "gini": round(fairness.gini(values), 4)})
        return figures

    async def recent_assignments(self) -> list[Assignment]:
        rows = await self.client.lrange(self.keys.recent_assignments, 0, -1)
        return [Assignment.from_script(orjson.loads(row)) for row in rows]

    async def assigned_count(self) -> int:
        return int(await self.client.get(self.keys.assigned_count) or 0)

