"""Real parts for every test that needs them: one redis-server and one Kafka-protocol broker for
the session, on free loopback ports; workers as real processes, each test with its own topics
(a prefix) and its own Redis workspace, so tests never see each other's data."""

from __future__ import annotations

import functools
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from dispatcher.check import check_workspace
from dispatcher.embedded import STOP_GRACE_S, ApiProcess, EmbeddedStack, WorkerProcess, free_port
from dispatcher.routing import Routing, load_routing

WorkerFactory = Callable[..., WorkerProcess]
DEFAULT_PRESENCE_TTL_S = 60.0
# The worker processes a test or module started, a list per factory, for the failure report.
STARTED_WORKERS = pytest.StashKey[list[list[WorkerProcess]]]()
FAILURE_LOG_LINES = 80


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "drift_expected: the test breaks its Redis workspace on purpose, so the "
                                       "invariant check after it is skipped")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failing test's report ends with the logs of the workers it ran on: a failure seen once in
    CI, on a clone whose temporary folders are gone, must carry what the workers were doing."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for node in item.listchain():
        for worker in (w for started in node.stash.get(STARTED_WORKERS, []) for w in started):
            report.sections.append((f"{worker.log_path.name}, last {FAILURE_LOG_LINES} lines",
                                    worker.log_tail(FAILURE_LOG_LINES)))


def fail_on_drift(node: pytest.Item | pytest.Collector, redis_url: str, workspace: str, *,
                  routing: Routing | None = None, presence_ttl_s: float = DEFAULT_PRESENCE_TTL_S) -> None:
    """`dispatcher check` on the workspace a test (or module) used, after it: whatever the workload,
    Redis must be left consistent, so a step that breaks an invariant fails the test that ran it.
    `routing` is what the steps used while no routing was in force (the built-in by default)."""
    if node.get_closest_marker("drift_expected"):
        return
    try:
        report = check_workspace(redis_url, workspace, routing or load_routing(None), presence_ttl_s)
    except redis.ConnectionError:
        return  # a redis of the test's own, stopped by it: nothing left to check
    if not report.ok:
        pytest.fail("\n".join([f"Redis workspace {workspace} drifted during the test:", *report.lines()]),
                    pytrace=False)


@pytest.fixture
def drift_check(request: pytest.FixtureRequest) -> Callable[..., None]:
    """fail_on_drift for the requesting test, for factories that know the workspaces they made."""
    return functools.partial(fail_on_drift, request.node)


def _check_workers(node: pytest.Item | pytest.Collector, started: list[WorkerProcess]) -> None:
    """One check per redis and workspace the workers used, with the shortest presence TTL among
    them (the one under which the fewest reps count as online, as the scripts saw it)."""
    spaces: dict[tuple[str, str], float] = {}
    for worker in started:
        space = (worker.env["DISPATCHER_REDIS_URL"], worker.env["DISPATCHER_WORKSPACE"])
        ttl = float(worker.env.get("DISPATCHER_PRESENCE_TTL_S", DEFAULT_PRESENCE_TTL_S))
        spaces[space] = min(ttl, spaces.get(space, ttl))
    for (redis_url, workspace), ttl in spaces.items():
        fail_on_drift(node, redis_url, workspace, presence_ttl_s=ttl)


# What a stopping worker logs once every service, task and timer has stopped: it writes nothing
# more. mode's Worker then idles for two seconds (`_gather_all`, `_sentinel_task`) before it exits.
SERVICES_STOPPED = b"Gathering all futures"
# Workers told to stop whose last idle seconds the tests do not wait out; reaped at session end.
_exiting: list[subprocess.Popen[bytes]] = []


def _stop_workers(workers: list[WorkerProcess]) -> None:
    """All at once, and only as long as they still work: a test's teardown need not wait out mode's
    idle seconds after the services stopped (they came to some two seconds per worker, minutes a suite)."""
    running = [w for w in workers if w.process is not None and w.process.poll() is None]
    for worker in running:
        worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for worker in running:
        while worker.process.poll() is None and SERVICES_STOPPED not in worker.log_path.read_bytes():
            if time.monotonic() > deadline:
                worker.kill()
                break
            time.sleep(0.02)
        _exiting.append(worker.process)


@pytest.fixture(scope="session", autouse=True)
def _reap_exiting_workers() -> Iterator[None]:
    yield
    for process in _exiting:
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()


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


def _worker_factory(node: pytest.Item | pytest.Collector, stack: EmbeddedStack, logs: Path, prefix: str,
                    kind: type[WorkerProcess] = WorkerProcess) -> tuple[WorkerFactory, list[WorkerProcess]]:
    """Workers made by one factory share topics and workspace, like several workers of one
    deployment; `start=False` leaves the process to the test (a restart after a kill). With
    `kind=ApiProcess`, api processes (`dispatcher api`) instead."""
    started: list[WorkerProcess] = []
    node.stash.setdefault(STARTED_WORKERS, []).append(started)
    scope = prefix.rstrip(".")

    def make(*, start: bool = True, **env_overrides: str) -> WorkerProcess:
        env = {
            **stack.worker_env,
            "DISPATCHER_TOPIC_PREFIX": prefix,
            "DISPATCHER_WORKSPACE": scope,
            "DISPATCHER_ALLOW_ANONYMOUS": "1",
            "DISPATCHER_HTTP_BIND": "127.0.0.1",
            "DISPATCHER_WORKER_ID": f"{kind.command[0]}{len(started) + 1}",
            **env_overrides,
        }
        worker = kind(env, free_port(), logs / f"{kind.command}-{scope}-{len(started) + 1}.log")
        started.append(worker)
        return worker.start() if start else worker

    return make, started


@pytest.fixture
def worker_factory(stack: EmbeddedStack, tmp_path: Path, unique_prefix: str,
                   request: pytest.FixtureRequest) -> Iterator[WorkerFactory]:
    make, started = _worker_factory(request.node, stack, tmp_path, unique_prefix)
    yield make
    _stop_workers(started)
    _check_workers(request.node, started)


@pytest.fixture
def api_process_factory(stack: EmbeddedStack, tmp_path: Path, unique_prefix: str,
                        request: pytest.FixtureRequest) -> Iterator[WorkerFactory]:
    """Api processes on the same topics and workspace as the test's `worker_factory` workers."""
    make, started = _worker_factory(request.node, stack, tmp_path, unique_prefix, ApiProcess)
    yield make
    _stop_workers(started)
    _check_workers(request.node, started)


@pytest.fixture(scope="module")
def worker_factory_module(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory,
                          request: pytest.FixtureRequest) -> Iterator[WorkerFactory]:
    make, started = _worker_factory(request.node, stack, tmp_path_factory.mktemp("workers"), _new_prefix())
    yield make
    _stop_workers(started)
    _check_workers(request.node, started)
