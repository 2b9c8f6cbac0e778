"""The one door to Redis. Every change of live state is one registered Lua script (dispatcher/state/lua),
run atomically; this module only lays out the keys and arguments and reads the answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.connection import HiredisRespSerializer
from redis.exceptions import NoScriptError

from dispatcher.routing import Routing
from dispatcher.state.keys import Keys
from strategies import policy

LUA_DIR = Path(__file__).parent / "lua"
# Width of one priority band in a wait set's score (lib.lua's PRIORITY_SPAN).
WAIT_BAND = 10**13
SCRIPT_NAMES = ("accept", "assign", "close", "presence", "upsert_rep", "reassign", "rebuild_queue")


class _HiredisPacking:
    """redis-py packs commands in C (hiredis) on its sync connections but in Python on its asyncio
    ones. A batch of 200 decisions is some 6,000 arguments, and packing them took a tenth of a
    worker's CPU while it drained a backlog (py-spy); redis-py's own hiredis packer does it in C."""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._packer.pack(*args)


class HiredisConnection(_HiredisPacking, aioredis.Connection):
    pass


class HiredisSSLConnection(_HiredisPacking, aioredis.SSLConnection):
    pass


def connect(url: str, max_connections: int) -> aioredis.Redis:
    """A client whose callers wait for a free connection rather than fail, so a burst of HTTP
    requests cannot open more than `max_connections` sockets to redis."""
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, decode_responses=True)
    # TCP and TLS connections pack in C; a unix socket keeps redis-py's own connection.
    pool.connection_class = {aioredis.Connection: HiredisConnection,
                             aioredis.SSLConnection: HiredisSSLConnection}.get(pool.connection_class, pool.connection_class)
    return aioredis.Redis(connection_pool=pool)


def capacity_buckets(capacity: int | Mapping[str, int]) -> list[str]:
    """The load buckets a capacity names: '*' for one number for all channels, else its channels
    (as bucket_for in lua/lib.lua spends them)."""
    return ["*"] if isinstance(capacity, int) else list(capacity)


def iso_ms(epoch_ms: float) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Assignment:
    lead_id: str
    rep_id: str
    queue: str
    strategy: str
    assigned_at_ms: int
    facts: Mapping[str, Any]
    accepted_at_ms: int
    reassigned: bool = False

    @classmethod
    def from_script(cls, row: Sequence[Any], *, reassigned: bool = False) -> Assignment:
        lead_id, rep_id, queue, strategy, assigned_at, facts, accepted_at = row
        return cls(lead_id, rep_id, queue, strategy, int(assigned_at), orjson.loads(facts), int(accepted_at), reassigned)

    @property
    def reason(self) -> str:
        return policy.explain(self.strategy, dict(self.facts))

    def event(self) -> dict[str, Any]:
        return {
            "lead_id": self.lead_id,
            "rep_id": self.rep_id,
            "queue": self.queue,
            "strategy": self.strategy,
            "reason": self.reason,
            "assigned_at": iso_ms(self.assigned_at_ms),
            "reassigned": self.reassigned,
        }


@dataclass(frozen=True)
class Decision:
    """kind: 'new' (decided now), 'replay' (the same delivery again: re-emit its event) or
    'duplicate' (the id was decided from another delivery: nothing to do)."""

    lead_id: str
    kind: str
    status: str
    queue: str
    assignment: Assignment | None = None


@dataclass(frozen=True)
class Outcome:
    """What a close, presence, profile or reassign call did. `code` is 'ok', 'not_found' or
    'conflict' (refused: `detail` says why in words); `assignments` are every lead that went to a
    rep as a result."""

    code: str
    detail: str = ""
    assignments: tuple[Assignment, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.code == "ok"


class Store:
    def __init__(self, client: aioredis.Redis, keys: Keys, routing: Routing, presence_ttl_s: float) -> None:
        self.client = client
        self.keys = keys
        self.presence_ttl_ms = int(presence_ttl_s * 1000)
        lib = (LUA_DIR / "lib.lua").read_text()
        self._scripts = {
            name: client.register_script(f"{lib}\n{(LUA_DIR / f'{name}.lua').read_text()}") for name in SCRIPT_NAMES
        }
        self.use_routing(routing)

    def use_routing(self, routing: Routing) -> None:
        self.routing = routing
        self._layouts: dict[tuple[str, tuple[str, ...]], tuple[list[str], list[Any]]] = {}
        self._all_channels = self._layout(routing.channels)

    def _layout(self, channels: tuple[str, ...], only_queue: str | None = None) -> tuple[list[str], list[Any]]:
        """KEYS and leading ARGV in the shape lib.lua's parse_context reads; cached, since it
        changes only with the routing file."""
        cache_key = (only_queue or "", channels)
        if cache_key not in self._layouts:
            queues = [q for q in self.routing.queues if only_queue in (None, q.name)]
            keys, args = self.keys.fixed(), [len(queues), ",".join(channels), self.presence_ttl_ms]
            for queue in queues:
                keys.append(self.keys.queue_members(queue.name))
                keys.append(self.keys.queue_ready(queue.name, "*"))
                keys.extend(self.keys.queue_ready(queue.name, channel) for channel in channels)
                keys.extend(self.keys.queue_wait(queue.name, channel) for channel in channels)
                args.extend((queue.name, queue.strategy, queue.order, queue.heartbeat_window_ms))
            self._layouts[cache_key] = (keys, args)
        return self._layouts[cache_key]

    # --- leads -----------------------------------------------------------------------------

    async def accept(self, lead: Mapping[str, Any]) -> str:
        """Records a lead as pending: 'new', or the status of the lead already known by its id."""
        return await self._scripts["accept"](keys=self.keys.fixed(), args=[lead["id"], orjson.dumps(lead)])

    async def assign(self, lead: Mapping[str, Any], source: str) -> Decision:
        (decision,) = await self.assign_many([(lead, source)])
        return decision

    async def assign_many(self, deliveries: Sequence[tuple[Mapping[str, Any], str]]) -> list[Decision]:
        """Several decisions in one round trip; each is still its own atomic script, in order."""
        script = self._scripts["assign"]
        queues = [self.routing.queue_for(lead) for lead, _ in deliveries]
        for attempt in (1, 2):
            # EVALSHA straight into the pipeline: redis-py's script-in-pipeline path asks SCRIPT
            # EXISTS first, a second round trip for every batch.
            pipe = self.client.pipeline(transaction=False)
            for (lead, source), queue in zip(deliveries, queues, strict=True):
                keys, args = self._layout((lead["channel"],))
                pipe.evalsha(script.sha, len(keys), *keys, *args, lead["id"], orjson.dumps(lead), source, queue)
            try:
                rows = await pipe.execute()
                break
            except NoScriptError:
                if attempt == 2:
                    raise
                # Redis lost its script cache (restart, SCRIPT FLUSH); nothing in the batch ran.
                await self.client.script_load(script.script)
        return [
            Decision(lead["id"], row[0], row[1], queue, Assignment.from_script(row[2]) if len(row) > 2 else None)
            for (lead, _), queue, row in zip(deliveries, queues, rows, strict=True)
        ]

    async def close(self, lead_id: str, outcome: str, *, actor: str = "") -> Outcome:
        """`actor` names who closed it (the caller's role and identity), kept in the lead's history."""
        keys, args = self._all_channels
        row = await self._scripts["close"](keys=keys, args=[*args, lead_id, outcome, actor])
        if row[0] == "unknown":
            return Outcome("not_found", f"unknown lead {lead_id}")
        if row[0] == "already_closed":
            return Outcome("ok", "already closed")
        return Outcome("ok", f"closed (was {row[1]})", tuple(Assignment.from_script(r) for r in row[3]))

    async def reassign(self, lead_id: str, rep_id: str | None, *, fallback_queue: str | None = None,
                       actor: str = "") -> Outcome:
        keys, args = self._all_channels
        row = await self._scripts["reassign"](
            keys=keys, args=[*args, lead_id, rep_id or "", fallback_queue or self.routing.default_queue, actor]
        )
        if row[0] == "refused":
            return Outcome(row[1], row[2])
        moved = (Assignment.from_script(row[2], reassigned=True),) if row[2] else ()
        return Outcome("ok", row[1], moved + tuple(Assignment.from_script(r) for r in row[3]))

    async def open_leads_of(self, rep_id: str) -> list[str] | None:
        """The rep's open leads, or None for an unknown rep; one round trip (reps poll this)."""
        pipe = self.client.pipeline(transaction=False)
        # "|" never occurs in an id and "}" is the byte after it: the range holds exactly this rep.
        pipe.hexists(self.keys.rep_profiles, rep_id)
        pipe.zrange(self.keys.open_leads, f"[{rep_id}|", f"({rep_id}}}", bylex=True)
        known, members = await pipe.execute()
        return [member.split("|", 1)[1] for member in members] if known else None

    async def lead(self, lead_id: str) -> dict[str, Any] | None:
        raw = await self.client.hget(self.keys.leads, lead_id)
        return None if raw is None else orjson.loads(raw)

    # --- reps ------------------------------------------------------------------------------

    async def set_presence(self, rep_id: str, status: str) -> Outcome:
        keys, args = self._all_channels
        row = await self._scripts["presence"](keys=keys, args=[*args, rep_id, status])
        if row[0] == "unknown":
            return Outcome("not_found", f"unknown rep {rep_id}; create it with PUT /v1/reps/{rep_id} first")
        return Outcome("ok", row[1], tuple(Assignment.from_script(r) for r in row[2]))

    async def upsert_rep(self, rep_id: str, profile: Mapping[str, Any]) -> Outcome:
        capacity = profile["capacity"]
        capacity_spec = f"*={capacity}" if isinstance(capacity, int) else ",".join(f"{c}={n}" for c, n in capacity.items())
        skills_spec = ",".join(f"{skill}={level}" for skill, level in profile.get("skills", {}).items())
        rank = (profile.get("attributes") or {}).get("rank", 0)
        keys, args = self._all_channels
        row = await self._scripts["upsert_rep"](
            keys=keys,
            args=[*args, rep_id, orjson.dumps(profile), capacity_spec, skills_spec, rank,
                  ",".join(self.routing.queues_for(profile))],
        )
        if row[0] == "conflict":
            return Outcome("conflict", row[1])
        return Outcome("ok", row[1], tuple(Assignment.from_script(r) for r in row[2]))

    async def rebuild_queues(self) -> list[Assignment]:
        """Recomputes every queue's members from the stored profiles and the current routing, and
        routes again the leads still waiting in queues the routing no longer has."""
        profiles = {rep: orjson.loads(raw) for rep, raw in (await self.client.hgetall(self.keys.rep_profiles)).items()}
        drained: list[Assignment] = []
        for queue in self.routing.queues:
            members = [rep for rep, profile in profiles.items() if queue.admits(profile)]
            keys, args = self._layout(self.routing.channels, only_queue=queue.name)
            row = await self._scripts["rebuild_queue"](keys=keys, args=[*args, *members])
            drained.extend(Assignment.from_script(r) for r in row[2])
        drained.extend(await self._reroute_removed_queues())
        await self.client.set(self.keys.routing_fingerprint, self.routing.fingerprint)
        return drained

    async def _reroute_removed_queues(self) -> list[Assignment]:
        current = {queue.name for queue in self.routing.queues}
        removed = await self.client.smembers(self.keys.routed_queues) - current
        moved: list[Assignment] = []
        for queue in removed:
            for channel in self.routing.channels:
                for lead_id in await self.client.zrange(self.keys.queue_wait(queue, channel), 0, -1):
                    record = await self.lead(lead_id)
                    if record and record["status"] == "queued":
                        outcome = await self.reassign(lead_id, None, fallback_queue=self.routing.queue_for(record["lead"]))
                        moved.extend(outcome.assignments)
            await self.client.delete(
                self.keys.queue_members(queue), self.keys.queue_ready(queue, "*"),
                *(self.keys.queue_ready(queue, c) for c in self.routing.channels),
                *(self.keys.queue_wait(queue, c) for c in self.routing.channels),
            )
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.routed_queues).sadd(self.keys.routed_queues, *current)
        await pipe.execute()
        return moved

    async def routing_is_current(self) -> bool:
        return await self.client.get(self.keys.routing_fingerprint) == self.routing.fingerprint

    async def reps(self, rep_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Rep objects as the API shows them: profile, effective status, load shaped like capacity."""
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        if rep_ids is None:
            pipe.hgetall(k.rep_profiles).hgetall(k.rep_status).zrange(k.rep_seen, 0, -1, withscores=True)
            pipe.hgetall(k.rep_load).hgetall(k.rep_last_assigned).time()
            profiles_raw, status, seen, load, last, now = await pipe.execute()
            profiles = {rep_id: orjson.loads(raw) for rep_id, raw in profiles_raw.items()}
        else:
            pipe.hmget(k.rep_profiles, rep_ids).hmget(k.rep_status, rep_ids)
            pipe.zmscore(k.rep_seen, rep_ids).hmget(k.rep_last_assigned, rep_ids).time()
            raw_list, status_list, seen_list, last_list, now = await pipe.execute()
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
            })
        return sorted(reps, key=lambda rep: rep["id"])

    async def queue_figures(self) -> list[dict[str, Any]]:
        """Per queue: leads waiting, how long the oldest has waited, members."""
        k, now_ms = self.keys, await self.now_ms()
        pipe = self.client.pipeline(transaction=False)
        for queue in self.routing.queues:
            pipe.scard(k.queue_members(queue.name))
            for channel in self.routing.channels:
                wait = k.queue_wait(queue.name, channel)
                pipe.zcard(wait)
                # The score is (9 - priority) * 1e13 + accepted ms: the oldest lead is the head of
                # one of the ten priority bands.
                for band in range(10):
                    pipe.zrangebyscore(wait, band * WAIT_BAND, (band + 1) * WAIT_BAND - 1, start=0, num=1,
                                       withscores=True)
        replies = iter(await pipe.execute())
        figures = []
        for queue in self.routing.queues:
            members = next(replies)
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
            })
        return figures

    async def recent_assignments(self) -> list[Assignment]:
        rows = await self.client.lrange(self.keys.recent_assignments, 0, -1)
        return [Assignment.from_script(orjson.loads(row)) for row in rows]

    async def assigned_count(self) -> int:
        return int(await self.client.get(self.keys.assigned_count) or 0)

    async def now_ms(self) -> int:
        seconds, micros = await self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000
