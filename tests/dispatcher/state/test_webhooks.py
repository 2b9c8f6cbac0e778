"""The webhook relay against a local aiohttp server: signed, retried with backoff on 5xx and
refused connections, given up into the dead-letter list after its bound, posted once across
relays, and never in the way of the decisions."""

from __future__ import annotations

import asyncio
import socket
import time

import orjson
from aiohttp import web
from prometheus_client import REGISTRY

from dispatcher.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, WebhookRelay, signature
from .conftest import lead


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def receiver(fail_first: int):
    hits: list[tuple[bytes, dict[str, str], float]] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append((await request.read(), dict(request.headers), time.monotonic()))
        return web.Response(status=500 if len(hits) <= fail_first else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/hook", hits


def relay_for(store, url: str, consumer: str = "w1", attempts: int = 4) -> WebhookRelay:
    return WebhookRelay(store.client, store.keys.notifications, store.keys.webhook_dead_letters, consumer, url,
                        "s3cret", attempts=attempts, backoff_s=0.05, timeout_s=1.0, block_ms=50)


async def test_signed_and_retried_with_growing_waits_until_delivered(store_factory, rep_factory):
    store = await store_factory()
    runner, url, hits = await receiver(fail_first=2)
    try:
        relay, other = relay_for(store, url), relay_for(store, url, "w2")
        await relay.relay_once()  # the group starts at the stream's end: only what comes next
        await rep_factory(store, "r")
        await store.assign(lead("w-1"), "p@0")
        delivered, delivery_s = (REGISTRY.get_sample_value(f"dispatcher_webhook_delivery_seconds_{name}") or 0.0
                                 for name in ("count", "sum"))
        assert await relay.relay_once() == 1
        assert await other.relay_once() == 0, "taken and acknowledged by one relay only"
        assert len(hits) == 3
        body, headers, _ = hits[-1]
        assert headers[SIGNATURE_HEADER] == signature("s3cret", body)
        assert orjson.loads(body)["lead_id"] == "w-1" and orjson.loads(body)["event_id"] == headers[EVENT_ID_HEADER]
        waits = [later[2] - earlier[2] for earlier, later in zip(hits, hits[1:], strict=False)]
        assert waits[0] >= 0.05 and waits[1] >= 0.1
        assert REGISTRY.get_sample_value("dispatcher_webhook_delivery_seconds_count") == delivered + 1
        assert REGISTRY.get_sample_value("dispatcher_webhook_delivery_seconds_sum") - delivery_s >= 0.15, \
            "the two backoff waits are part of the delivery"
        assert {h[1][EVENT_ID_HEADER] for h in hits} == {headers[EVENT_ID_HEADER]}
        assert await store.client.llen(store.keys.webhook_dead_letters) == 0
        await relay.close()
        await other.close()
    finally:
        await runner.cleanup()


async def test_a_receiver_that_is_down_never_holds_up_decisions_and_ends_in_dead_letters(store_factory, rep_factory):
    store = await store_factory()
    relay = relay_for(store, f"http://127.0.0.1:{free_port()}/hook", attempts=3)
    await relay.relay_once()
    await rep_factory(store, "r", capacity=100)
    await store.assign(lead("first"), "p@0")
    running = asyncio.create_task(relay.relay_once())
    await asyncio.sleep(0.01)
    started = time.monotonic()
    for n in range(50):
        assert (await store.assign(lead(f"d-{n}"), f"p@{n + 1}")).status == "assigned"
    assert time.monotonic() - started < 1.0 and not running.done(), "decisions ran while the relay was retrying"
    assert await running == 1
    (letter,) = [orjson.loads(raw) for raw in await store.client.lrange(store.keys.webhook_dead_letters, 0, -1)]
    assert letter["event"]["lead_id"] == "first" and letter["attempts"] == 3
    assert "ClientConnectorError" in letter["error"] or "Connect" in letter["error"]
    await relay.close()
