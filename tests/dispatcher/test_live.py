"""The live picture is sampled when asked (a page, a worker's scrape), at most once a second:
a worker nobody watches or scrapes reads no roster, a scrape sees the floor as it is, and a scrape
is answered (with the last sample's gauges) while Redis does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

import redis.asyncio as aioredis

from dispatcher.embedded import EmbeddedStack
from dispatcher.live import GAUGES_SAMPLE_TIMEOUT_S, SAMPLE_EVERY_S
from dispatcher.state.keys import Keys


async def scrape(api) -> str:
    async with api.session.get(api.base + "/metrics") as response:
        assert response.status == 200
        return await response.text()


def reps_by_status(exported: str) -> dict[str, float]:
    return {status: float(value) for status, value in
            re.findall(r'^dispatcher_reps_by_status\{status="(\w+)"\} (\S+)$', exported, re.M)}


class RosterReads:
    """Counts the whole-roster reads (HGETALL of the workspace's rep profiles) Redis serves, by MONITOR."""

    def __init__(self, redis_url: str, workspace: str) -> None:
        self.client = aioredis.from_url(redis_url)
        self.key = Keys(workspace).rep_profiles
        self.count = 0

    async def _watch(self, ready: asyncio.Event) -> None:
        async with self.client.monitor() as monitor:
            ready.set()
            async for command in monitor.listen():
                if command["command"] == f"HGETALL {self.key}":
                    self.count += 1

    @contextlib.asynccontextmanager
    async def watching(self):  # type: ignore[no-untyped-def]
        ready = asyncio.Event()
        watcher = asyncio.create_task(self._watch(ready))
        await asyncio.wait_for(ready.wait(), 5)
        try:
            yield self
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self.client.aclose()


async def test_a_worker_nobody_asks_reads_no_roster_and_a_scrape_reads_it_once(worker_factory, api_factory, stack):
    worker = worker_factory()
    api = await api_factory(worker)
    await api.rep("ana", capacity=1)
    async with RosterReads(stack.redis_url, worker.env["DISPATCHER_WORKSPACE"]).watching() as reads:
        await asyncio.sleep(3 * SAMPLE_EVERY_S)
        assert reads.count == 0, "an idle worker sampled the roster"
        first, second = await scrape(api), await scrape(api)
        await asyncio.sleep(0.2)  # MONITOR's lines arrive after the replies
        assert reads.count == 1, "two scrapes within a second share one sample"
    assert reps_by_status(first)["online"] == reps_by_status(second)["online"] == 1


async def test_a_scrape_sees_a_change_made_just_before_it(worker_factory, api_factory):
    worker = worker_factory()
    api = await api_factory(worker)
    await api.rep("ana", capacity=1)
    assert reps_by_status(await scrape(api)) == {"online": 1, "away": 0, "offline": 0}
    await asyncio.sleep(SAMPLE_EVERY_S + 0.1)
    assert (await api.call("POST", "/v1/reps/ana/presence", {"status": "away"}))[0] == 200
    assert reps_by_status(await scrape(api)) == {"online": 0, "away": 1, "offline": 0}


async def test_a_scrape_is_answered_with_the_last_gauges_while_redis_does_not_answer(worker_factory, api_factory, tmp_path):
    with EmbeddedStack(tmp_path / "own-redis", with_broker=False) as own:
        worker = worker_factory(DISPATCHER_REDIS_URL=own.redis_url)
        api = await api_factory(worker)
        await api.rep("ana", capacity=1)
        assert reps_by_status(await scrape(api))["online"] == 1
        await asyncio.sleep(SAMPLE_EVERY_S + 0.1)
        admin = aioredis.from_url(own.redis_url)
        try:
            # Every client's commands wait until the pause ends, well after the scrape gives up on them.
            await admin.execute_command("CLIENT", "PAUSE", int((GAUGES_SAMPLE_TIMEOUT_S + 3) * 1000), "ALL")
            started = time.monotonic()
            exported = await scrape(api)
            waited_s = time.monotonic() - started
        finally:
            await admin.aclose()
        assert GAUGES_SAMPLE_TIMEOUT_S <= waited_s < GAUGES_SAMPLE_TIMEOUT_S + 2
        assert reps_by_status(exported)["online"] == 1, "the last sample's gauges"
        assert "live sample for the gauges failed" in worker.log_tail(200)
        await asyncio.sleep(3)
        assert worker.process.poll() is None
        assert reps_by_status(await scrape(api))["online"] == 1
