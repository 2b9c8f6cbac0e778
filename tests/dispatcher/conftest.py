"""What the worker-level tests share: a small HTTP client for a worker, and where its topics are."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest


class Api:
    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session, self.base = session, f"http://127.0.0.1:{port}"

    async def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        async with self.session.request(method, self.base + path, data=data, headers=headers) as response:
            text = await response.read()
            return response.status, orjson.loads(text) if text else None

    async def rep(self, rep_id: str, capacity: Any = 2, status: str = "online", **profile: Any) -> None:
        code, body = await self.call("PUT", f"/v1/reps/{rep_id}", {"capacity": capacity, **profile})
        assert code == 200, body
        code, body = await self.call("POST", f"/v1/reps/{rep_id}/presence", {"status": status})
        assert code == 200, body

    async def lead_status(self, lead_id: str) -> dict[str, Any] | None:
        code, body = await self.call("GET", f"/v1/leads/{lead_id}")
        return body if code == 200 else None


@pytest.fixture
async def api_factory():
    sessions = []

    async def make(worker) -> Api:
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Api(session, worker.http_port)

    yield make
    for session in sessions:
        await session.close()


@pytest.fixture
def two_workers(worker_factory, api_factory, tmp_path):
    """Starts two workers on one routing file whose due timers run every `poll_s`, as the tests of
    timer-driven moves need (both timers race for each move); returns an Api on the first worker
    and both workers."""

    async def make(routing_yaml: str, poll_s: float) -> tuple[Api, tuple[Any, Any]]:
        routing = tmp_path / "routing.yaml"
        routing.write_text(routing_yaml)
        settings = {"DISPATCHER_ROUTING": str(routing), "DISPATCHER_DUE_POLL_S": str(poll_s)}
        workers = worker_factory(**settings), worker_factory(**settings)
        return await api_factory(workers[0]), workers

    return make


def topic(worker, name: str) -> str:
    return worker.env["DISPATCHER_TOPIC_PREFIX"] + name


async def with_status(api: Api, lead_id: str, status: str) -> dict[str, Any] | None:
    """The lead once it has this status (for eventually()), else None."""
    lead = await api.lead_status(lead_id)
    return lead if lead and lead["status"] == status else None


async def assigned(api: Api, lead_id: str) -> dict[str, Any] | None:
    return await with_status(api, lead_id, "assigned")
