"""How the state steps reach Redis: the client, the registered scripts (built from the strategy
declarations), and the KEYS and ARGV layout every script reads first (lua/lib.lua's parse_context),
kept in step with the routing in force."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.connection import HiredisRespSerializer
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dispatcher.routing import Queue, Routing, parse_routing
from dispatcher.state.keys import ENCODING_CEILINGS, Keys
from strategies import policy
from strategies.base import MIN_WEIGHT, OUTCOME_DAYS, PASS_SCALE, Strategy

LUA_DIR = Path(__file__).parent / "lua"
SCRIPT_NAMES = ("accept", "assign", "close", "presence", "upsert_rep", "reassign", "apply_routing", "expire_closed",
                "move_due", "forget_rep_log", "accept_offer", "reject_offer", "claim", "release", "contact", "shift")
# A step built for a routing that is no longer in force is refused before it writes (lib.lua);
# the caller adopts the routing in force and builds the step again.
STALE = "STALE_"


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


async def encoding_advice(client: aioredis.Redis) -> list[str]:
    """In words, each of the server's packed-list ceilings above the dispatcher's (keys.py,
    ENCODING_CEILINGS) and the setting that mends it; nothing when the server will not say (CONFIG
    renamed or refused, as some hosted Redis do, or a Redis that names them otherwise)."""
    advice = []
    for name, ceiling in ENCODING_CEILINGS.items():
        try:
            found = await client.config_get(name)
        except ResponseError:
            return []
        if name in found and int(found[name]) > ceiling:
            advice.append(f"Redis has {name} {found[name]}: a decision scans the roster's packed lists rep by "
                          f"rep, 15% of its Redis instructions with 100 to 200 reps; set {name} {ceiling}")
    return advice


def strategies_lua(strategies: Mapping[str, Strategy]) -> str:
    """The strategy declarations as the Lua function the scripts read them from (lib.lua): the only
    place the scripts learn what a strategy orders by, how it walks, what a turn costs, and which
    filters it applies; with the constants of weighted turns, so Lua and the pure models compute
    alike. A function rather than a table of every strategy: each step runs this text again, and
    building all nine tables cost ~4 µs of it, where a step needs only its queues' strategies."""
    entries = []
    for name, declared in sorted(strategies.items()):
        fields = [f"order = {orjson.dumps(declared.order_codes).decode()}", f"walk = {orjson.dumps(declared.walk).decode()}"]
        if declared.turn:
            fields.append(f"turn = {orjson.dumps(declared.turn).decode()}")
        fields += [f"{filter_name} = true" for filter_name in declared.filters]
        entries.append(f"    if name == {orjson.dumps(name).decode()} then return {{{', '.join(fields)}}} end")
    constants = f"local PASS_SCALE, MIN_WEIGHT, OUTCOME_DAYS = {PASS_SCALE}, {MIN_WEIGHT!r}, {OUTCOME_DAYS}\n"
    return constants + "local function strategy_named(name)\n" + "\n".join(entries) + "\nend\n"


# lib.lua names every index of the fixed KEYS ("local K_LEADS, K_PROFILES, ... = 1, 2, ...").
_KEY_NAMES = re.compile(r"^local ((?:K_\w+, )*K_\w+) = ([\d, ]+)\n", re.M)


def with_key_numbers(script: str) -> str:
    """The script with each KEYS[K_NAME] read as KEYS[n]. Every EVALSHA defines lib.lua's ~110
    functions again, and a function reading K_NAME captures it as an upvalue, which Lua 5.1 finds
    by walking the list of the chunk's open upvalues: those walks were a third of defining lib.lua
    (some 8 of its 19 µs per step, INFO commandstats)."""
    numbers: dict[str, str] = {}
    for names, values in _KEY_NAMES.findall(script):
        numbers.update(zip(names.split(", "), values.split(", "), strict=True))
    return re.sub(r"KEYS\[(K_\w+)\]", lambda m: f"KEYS[{numbers[m[1]]}]", _KEY_NAMES.sub("", script))


def queue_args(queue: Queue) -> tuple[Any, ...]:
    """One queue's ARGV block in lib.lua's order (QUEUE_ARGS of them)."""
    overflow, sticky, offer, pool, sla = queue.overflow, queue.sticky, queue.offer, queue.pool, queue.sla
    return (queue.name, queue.strategy, queue.heartbeat_window_ms,
            int(overflow.after_s * 1000) if overflow else 0, overflow.to if overflow else "",
            int(sticky.wait_s * 1000) if sticky else -1, orjson.dumps(queue.options),
            int(offer.accept_timeout_s * 1000) if offer else 0, offer.away_after_timeouts if offer else 0,
            int(pool.after_s * 1000) if pool and pool.after_s else 0,
            pool.max_claims_per_hour or 0 if pool else 0,
            int(sla.first_contact_s * 1000) if sla else 0, sla.on_breach if sla else "",
            sla.escalate_to or "" if sla else "")


class Layout:
    def __init__(self, client: aioredis.Redis, keys: Keys, routing: Routing, presence_ttl_s: float) -> None:
        self.client = client
        self.keys = keys
        self.presence_ttl_ms = int(presence_ttl_s * 1000)
        prelude = strategies_lua(policy.STRATEGIES) + (LUA_DIR / "lib.lua").read_text()
        self._scripts = {
            name: client.register_script(with_key_numbers(f"{prelude}\n{(LUA_DIR / f'{name}.lua').read_text()}"))
            for name in SCRIPT_NAMES
        }
        # "0": no routing applied in this workspace yet; steps built for it run until one is.
        self.use_routing(routing, "0")

    def use_routing(self, routing: Routing, version: str) -> None:
        self.routing, self.routing_version = routing, version
        self._layouts: dict[tuple[str, ...], tuple[list[str], list[Any]]] = {}

    def _queue_keys(self, queue: str, channels: Sequence[str]) -> list[str]:
        """One queue's block of KEYS in lib.lua's order."""
        k = self.keys
        return [k.queue_members(queue), k.queue_state(queue), k.queue_ready(queue, "*"),
                *(k.queue_ready(queue, c) for c in channels), *(k.queue_wait(queue, c) for c in channels),
                *(k.queue_wait_index(queue, c) for c in channels), k.queue_pool(queue)]

    def _layout(self, channels: tuple[str, ...]) -> tuple[list[str], list[Any]]:
        """KEYS and leading ARGV for the routing in hand; cached, since they change only with it."""
        if channels not in self._layouts:
            self._layouts[channels] = self._layout_for(self.routing, self.routing_version, channels)
        return self._layouts[channels]

    def _layout_for(self, routing: Routing, version: str,
                    channels: tuple[str, ...] | None = None) -> tuple[list[str], list[Any]]:
        """KEYS and leading ARGV in the shape lib.lua's parse_context reads."""
        channels = routing.channels if channels is None else channels
        keys, args = self.keys.fixed(), [len(routing.queues), ",".join(channels), self.presence_ttl_ms, version,
                                        routing.default_queue]
        for queue in routing.queues:
            keys.extend(self._queue_keys(queue.name, channels))
            args.extend(queue_args(queue))
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

    async def now_ms(self) -> int:
        seconds, micros = await self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000
