"""Real parts for every test that needs them: one redis-server and one Kafka-protocol broker for
the session, on free loopback ports; workers as real processes, each test with its own topics
(a prefix) and its own Redis workspace, so tests never see each other's data."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from dispatcher.embedded import EmbeddedStack, WorkerProcess, free_port

WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with EmbeddedStack(tmp_path_factory.mktemp("stack")) as running:
        yield running


def _new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def unique_prefix() -> str:
    """A topic prefix no other test uses; `worker_factory` gives the test's workers this one."""
    return _new_prefix()


@pytest.fixture
async def redis_client(stack: EmbeddedStack) -> AsyncIterator[aioredis.Redis]:
    """Not flushed: module-scoped workers keep their state in this redis across tests, and every
    test already has its own workspace (key prefix), so a FLUSHALL would only break them."""
    client = aioredis.from_url(stack.redis_url, decode_responses=True)
    yield client
    await client.aclose()


def _worker_factory(stack: EmbeddedStack, logs: Path, prefix: str) -> tuple[WorkerFactory, list[WorkerProcess]]:
    """Workers made by one factory share topics and workspace, like several workers of one
    deployment; `start=False` leaves the process to the test (a restart after a kill)."""
    started: list[WorkerProcess] = []
    scope = prefix.rstrip(".")

    def make(*, start: bool = True, **env_overrides: str) -> WorkerProcess:
        env = {
            "DISPATCHER_BROKER": stack.broker_url,
            "DISPATCHER_REDIS_URL": stack.redis_url,
            "DISPATCHER_TOPIC_PREFIX": prefix,
            "DISPATCHER_WORKSPACE": scope,
            "DISPATCHER_ALLOW_ANONYMOUS": "1",
            "DISPATCHER_HTTP_BIND": "127.0.0.1",
            "DISPATCHER_WORKER_ID": f"w{len(started) + 1}",
            # Tansu holds a new group member's first join for half the session timeout: 1.5 s, not 5.
            "DISPATCHER_BROKER_SESSION_TIMEOUT_S": "3",
            **env_overrides,
        }
        worker = WorkerProcess(env, free_port(), logs / f"worker-{scope}-{len(started) + 1}.log")
        started.append(worker)
        return worker.start() if start else worker

    return make, started


@pytest.fixture
def worker_factory(stack: EmbeddedStack, tmp_path: Path, unique_prefix: str) -> Iterator[WorkerFactory]:
    make, started = _worker_factory(stack, tmp_path, unique_prefix)
    yield make
    for worker in started:
        worker.terminate()


@pytest.fixture(scope="module")
def worker_factory_module(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerFactory]:
    make, started = _worker_factory(stack, tmp_path_factory.mktemp("workers"), _new_prefix())
    yield make
    for worker in started:
        worker.terminate()
