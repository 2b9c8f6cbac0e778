"""Real parts for every test that needs them: one redis-server and one Kafka-protocol broker for
the session, on free loopback ports; workers as real processes, each test with its own topics
(a prefix) and its own Redis workspace, so tests never see each other's data."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dispatcher.embedded import EmbeddedStack, WorkerProcess, free_port

WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with EmbeddedStack(tmp_path_factory.mktemp("stack")) as running:
        yield running


def _worker_factory(stack: EmbeddedStack, logs: Path) -> tuple[WorkerFactory, list[WorkerProcess]]:
    """Workers made by one factory share topics and workspace, like several workers of one
    deployment; `start=False` leaves the process to the test (a restart after a kill)."""
    started: list[WorkerProcess] = []
    scope = uuid.uuid4().hex[:8]

    def make(*, start: bool = True, **env_overrides: str) -> WorkerProcess:
        env = {
            "DISPATCHER_BROKER": stack.broker_url,
            "DISPATCHER_REDIS_URL": stack.redis_url,
            "DISPATCHER_TOPIC_PREFIX": f"t{scope}.",
            "DISPATCHER_WORKSPACE": f"t{scope}",
            "DISPATCHER_ALLOW_ANONYMOUS": "1",
            "DISPATCHER_HTTP_HOST": "127.0.0.1",
            "DISPATCHER_WORKER_ID": f"w{len(started) + 1}",
            **env_overrides,
        }
        worker = WorkerProcess(env, free_port(), logs / f"worker-{scope}-{len(started) + 1}.log")
        started.append(worker)
        return worker.start() if start else worker

    return make, started


@pytest.fixture
def worker_factory(stack: EmbeddedStack, tmp_path: Path) -> Iterator[WorkerFactory]:
    make, started = _worker_factory(stack, tmp_path)
    yield make
    for worker in started:
        worker.terminate()


@pytest.fixture(scope="module")
def worker_factory_module(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerFactory]:
    make, started = _worker_factory(stack, tmp_path_factory.mktemp("workers"))
    yield make
    for worker in started:
        worker.terminate()
