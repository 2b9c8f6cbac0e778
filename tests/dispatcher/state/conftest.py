"""Factories for the Redis-level tests: a Store on the session's real redis-server, in a
workspace of its own, with a routing file given as YAML (or the built-in default)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from dispatcher.routing import load_routing, parse_routing
from dispatcher.state.keys import Keys
from dispatcher.state.layout import connect
from dispatcher.state.store import Store

StoreFactory = Callable[..., Awaitable[Store]]


@pytest.fixture
async def store_factory(stack: Any, drift_check: Callable[..., None]) -> AsyncIterator[StoreFactory]:
    """Each store's workspace is checked for drift after the test (tests/conftest.py fail_on_drift)."""
    clients: list[aioredis.Redis] = []
    stores: list[Store] = []

    async def make(routing_yaml: str | None = None, *, presence_ttl_s: float = 60.0, pool_size: int = 50,
                   keys: Keys | None = None) -> Store:
        """`keys`: another store's workspace, as a second worker (or a restarted one) sees it."""
        client = connect(stack.redis_url, pool_size)
        clients.append(client)
        routing = parse_routing(routing_yaml, "test routing") if routing_yaml else load_routing(None)
        store = Store(client, keys or Keys(f"test-{uuid.uuid4().hex[:12]}"), routing, presence_ttl_s)
        stores.append(store)
        return store

    yield make
    for client in clients:
        await client.aclose()
    for store in stores:
        drift_check(stack.redis_url, store.keys.workspace, routing=store.routing,
                    presence_ttl_s=store.presence_ttl_ms / 1000)


@pytest.fixture
def rep_factory() -> Callable[..., Awaitable[None]]:
    """Puts a rep in place, online unless told otherwise; every field has a default."""

    async def make(
        store: Store,
        rep_id: str,
        *,
        capacity: int | dict[str, int] = 2,
        skills: dict[str, int] | None = None,
        attributes: dict[str, Any] | None = None,
        teams: list[str] | None = None,
        status: str = "online",
        schedule: dict[str, Any] | None = None,
    ) -> None:
        profile = {"capacity": capacity, "skills": skills or {}, "attributes": attributes or {}, "teams": teams or []}
        if schedule is not None:
            profile["schedule"] = schedule
        outcome = await store.upsert_rep(rep_id, profile)
        assert outcome.ok, outcome.detail
        assert (await store.set_presence(rep_id, status)).ok

    return make


_leads = itertools.count()


def lead(lead_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A valid lead as the scripts take it, with full defaults."""
    return {"id": lead_id or f"lead-{next(_leads)}", "channel": "web", "priority": 0, **fields}
