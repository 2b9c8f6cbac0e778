"""The one door to Redis. Every change of live state is one registered Lua script (dispatcher/state/lua),
run atomically; this module only lays out the keys and arguments and reads the answers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from dispatcher.routing import Routing, parse_routing
from dispatcher.state.keys import Keys
from strategies import policy

LUA_DIR = Path(__file__).parent / "lua"
# Width of one priority band in a wait set's score (lib.lua's PRIORITY_SPAN).
WAIT_BAND = 10**13
SCRIPT_NAMES = ("accept", "assign", "close", "presence", "upsert_rep", "reassign", "apply_routing", "expire_closed")
# A step built for a routing that is no longer in force is refused before it writes (lib.lua);
# the caller adopts the routing in force and builds the step again.
STALE = "STALE_"
# Preparing a routing change reads state that may move meanwhile; the step is prepared again.
APPLY_ATTEMPTS = 20


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

    @property
    def decision_event_id(self) -> str:
        """The event id of a lead's own decision, announced by the worker that decided it: a lead
        is decided once, so this names it on every replay. (Outbox events carry the entry id.)"""
        return f"decided:{self.lead_id}"

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
    """kind: 'new' (decided now), 'replay' (the same delivery again), 'duplicate' (the id was
    decided from another delivery) or 'failed' (the step refused this lead: `error` says why; the
    lead belongs in the dead-letter topic). Only 'new' changed anything."""

    lead_id: str
    kind: str
    status: str
    queue: str
    assignment: Assignment | None = None
    error: str = ""


@dataclass(frozen=True)
class Outcome:
    """What a close, presence, profile or reassign call did. `code` is 'ok', 'not_found',
    'forbidden' or 'conflict' (refused: `detail` says why in words); `assignments` are every lead that went to a
    rep as a result."""

    code: str
    detail: str = ""
    assignments: tuple[Assignment, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.code == "ok"


class RoutingRefused(ValueError):
    """A routing change that cannot be applied safely; `reasons` say why, in words."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


@dataclass(frozen=True)
class RoutingChange:
    version: str
    applied: bool
    assignments: tuple[Assignment, ...] = ()
    rerouted: int = 0


def is_stale(error: BaseException) -> bool:
    return isinstance(error, ResponseError) and str(error).startswith(STALE)


# Redis cannot take this write now (away, a replica not yet promoted, memory full, loading a
# snapshot, a failover under way), as opposed to refusing this one step.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OutOfMemoryError, BusyLoadingError,
               MasterDownError, TryAgainError, ClusterDownError)


def is_unavailable(error: BaseException) -> bool:
    """Worth waiting for, never the input's fault."""
    return isinstance(error, UNAVAILABLE) or (
        isinstance(error, ResponseError) and str(error).startswith(("BUSY", "NOREPLICAS")))


class Store:
    def __init__(self, client: aioredis.Redis, keys: Keys, routing: Routing, presence_ttl_s: float) -> None:
        self.client = client
        self.keys = keys
        self.presence_ttl_ms = int(presence_ttl_s * 1000)
        lib = (LUA_DIR / "lib.lua").read_text()
        self._scripts = {
            name: client.register_script(f"{lib}\n{(LUA_DIR / f'{name}.lua').read_text()}") for name in SCRIPT_NAMES
        }
        # "0": no routing applied in this workspace yet; steps built for it run until one is.
        self.use_routing(routing, "0")

    def use_routing(self, routing: Routing, version: str) -> None:
        self.routing, self.routing_version = routing, version
        self._layouts: dict[tuple[str, ...], tuple[list[str], list[Any]]] = {}

    def _queue_keys(self, queue: str, channels: Sequence[str]) -> list[str]:
        """One queue's block of KEYS in lib.lua's order."""
        k = self.keys
        return [k.queue_members(queue), k.queue_ready(queue, "*"), *(k.queue_ready(queue, c) for c in channels),
                *(k.queue_wait(queue, c) for c in channels), *(k.queue_wait_index(queue, c) for c in channels)]

    def _layout(self, channels: tuple[str, ...]) -> tuple[list[str], list[Any]]:
        """KEYS and leading ARGV for the routing in hand; cached, since they change only with it."""
        if channels not in self._layouts:
            self._layouts[channels] = self._layout_for(self.routing, self.routing_version, channels)
        return self._layouts[channels]

    def _layout_for(self, routing: Routing, version: str,
                    channels: tuple[str, ...] | None = None) -> tuple[list[str], list[Any]]:
        """KEYS and leading ARGV in the shape lib.lua's parse_context reads."""
        channels = routing.channels if channels is None else channels
        keys, args = self.keys.fixed(), [len(routing.queues), ",".join(channels), self.presence_ttl_ms, version]
        for queue in routing.queues:
            keys.extend(self._queue_keys(queue.name, channels))
            args.extend((queue.name, queue.strategy, queue.order, queue.heartbeat_window_ms))
        return keys, args

    async def _step(self, name: str, own_args: Callable[[], Sequence[Any]]) -> Any:
        """One script over the layout of every channel, built again for the routing in force when
        the routing changed under it. `own_args` builds the script's own arguments each time, since
        some come from the routing in hand (a rep's queues, the default queue)."""
        while True:
            keys, args = self._layout(self.routing.channels)
            try:
                return await self._scripts[name](keys=keys, args=[*args, *own_args()])
            except ResponseError as exc:
                if not is_stale(exc):
                    raise
                await self.adopt_routing()

    # --- leads -----------------------------------------------------------------------------

    async def accept(self, lead: Mapping[str, Any]) -> str:
        """Records a lead as pending: 'new', or the status of the lead already known by its id."""
        return await self._scripts["accept"](keys=self.keys.fixed(), args=[lead["id"], orjson.dumps(lead)])

    async def assign(self, lead: Mapping[str, Any], source: str) -> Decision:
        (decision,) = await self.assign_many([(lead, source)])
        return decision

    async def assign_many(self, deliveries: Sequence[tuple[Mapping[str, Any], str]]) -> list[Decision]:
        """Several decisions in one round trip; each is still its own atomic script, in order.

        One lead's failure is that lead's alone: it comes back as a 'failed' decision and the rest
        are decided. Leads whose step met a routing change are decided again under the new one.
        Errors that say Redis cannot take writes now (connection, READONLY, OOM) are raised, for
        the caller to retry the batch: every step is idempotent by lead id."""
        decisions: dict[int, Decision] = {}
        todo = list(range(len(deliveries)))
        while todo:
            queues = {i: self.routing.queue_for(deliveries[i][0]) for i in todo}
            rows = await self._evalsha_batch([(deliveries[i], queues[i]) for i in todo])
            stale = []
            for i, row in zip(todo, rows, strict=True):
                lead, _ = deliveries[i]
                if is_stale(row):
                    stale.append(i)
                elif isinstance(row, ResponseError):
                    if is_unavailable(row):
                        raise row
                    decisions[i] = Decision(lead["id"], "failed", "", queues[i], error=str(row))
                else:
                    assignment = Assignment.from_script(row[2]) if len(row) > 2 else None
                    decisions[i] = Decision(lead["id"], row[0], row[1], queues[i], assignment)
            if stale:
                await self.adopt_routing()
            todo = stale
        return [decisions[i] for i in range(len(deliveries))]

    async def _evalsha_batch(self, steps: Sequence[tuple[tuple[Mapping[str, Any], str], str]]) -> list[Any]:
        script = self._scripts["assign"]
        for attempt in (1, 2):
            # EVALSHA straight into the pipeline: redis-py's script-in-pipeline path asks SCRIPT
            # EXISTS first, a second round trip for every batch.
            pipe = self.client.pipeline(transaction=False)
            for (lead, source), queue in steps:
                keys, args = self._layout((lead["channel"],))
                pipe.evalsha(script.sha, len(keys), *keys, *args, lead["id"], orjson.dumps(lead), source, queue)
            rows = await pipe.execute(raise_on_error=False)
            if not any(isinstance(row, NoScriptError) for row in rows):
                return rows
            if attempt == 2:
                raise next(row for row in rows if isinstance(row, NoScriptError))
            # Redis lost its script cache (restart, SCRIPT FLUSH): no step of the batch ran.
            await self.client.script_load(script.script)
        raise AssertionError("unreachable")

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

    async def expire_closed(self, retention_s: float, limit: int = 1000) -> int:
        """Forgets up to `limit` leads closed more than `retention_s` ago; returns how many."""
        return await self._scripts["expire_closed"](keys=self.keys.fixed(), args=[int(retention_s * 1000), limit])

    # --- reps ------------------------------------------------------------------------------

    async def set_presence(self, rep_id: str, status: str, *, actor: str = "") -> Outcome:
        row = await self._step("presence", lambda: (rep_id, status, actor))
        if row[0] == "unknown":
            return Outcome("not_found", f"unknown rep {rep_id}; create it with PUT /v1/reps/{rep_id} first")
        return Outcome("ok", row[1], tuple(Assignment.from_script(r) for r in row[2]))

    async def upsert_rep(self, rep_id: str, profile: Mapping[str, Any], *, actor: str = "") -> Outcome:
        capacity = profile["capacity"]
        capacity_spec = f"*={capacity}" if isinstance(capacity, int) else ",".join(f"{c}={n}" for c, n in capacity.items())
        skills_spec = ",".join(f"{skill}={level}" for skill, level in profile.get("skills", {}).items())
        rank = (profile.get("attributes") or {}).get("rank", 0)
        row = await self._step("upsert_rep", lambda: (rep_id, orjson.dumps(profile), capacity_spec, skills_spec, rank,
                                                      ",".join(self.routing.queues_for(profile)), actor))
        if row[0] == "conflict":
            return Outcome("conflict", row[1])
        return Outcome("ok", row[1], tuple(Assignment.from_script(r) for r in row[2]))

    # --- routing ---------------------------------------------------------------------------

    async def adopt_routing(self) -> bool:
        """Takes up the routing in force in Redis if it is not the one in hand; True if it changed."""
        # The version alone first: workers ask every few seconds, and the spec can be long.
        if (await self.client.hget(self.keys.routing, "version") or "0") == self.routing_version:
            return False
        version, spec, source = await self.client.hmget(self.keys.routing, ["version", "spec", "source"])
        if version is None:
            # The workspace lost its routing (a flushed Redis): steps run with the routing in hand
            # until one is applied again.
            self.use_routing(self.routing, "0")
        else:
            self.use_routing(parse_routing(spec, source), version)
        return True

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
        records = await self.client.hmget(k.leads, waiting_ids) if waiting_ids else []
        stranded = []
        for lead_id, raw in zip(waiting_ids, records, strict=True):
            lead = orjson.loads(orjson.loads(raw)["body"]) if raw else {}
            stranded.extend((lead_id, new.queue_for(lead) if lead.get("channel") in new.channels else ""))
        base_keys, base_args = self._layout_for(new, self.routing_version)
        keys = [*base_keys, k.routing_history]
        for queue in removed:
            keys.extend(self._queue_keys(queue, old.channels)[:2])
            for channel in old.channels:
                keys.extend((k.queue_ready(queue, channel), k.queue_wait(queue, channel), k.queue_wait_index(queue, channel)))
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
                *members_args, len(stranded) // 2, *stranded]
        row = await self._scripts["apply_routing"](keys=keys, args=args)
        if row[0] == "refused":
            raise RoutingRefused(row[1:])
        self.use_routing(new, row[1])
        return RoutingChange(row[1], applied=True, assignments=tuple(Assignment.from_script(r) for r in row[2]),
                             rerouted=int(row[3]))

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
