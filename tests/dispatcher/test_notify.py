"""Notifications and the audit trail on a real worker: the rep's SSE stream delivers an assignment
within a second of posting the lead (and resumes with Last-Event-ID), its history endpoint pages the
rep's events, the decision's history reaches lead-events with ids, and a webhook receiver that fails
its first tries gets the signed event; and the worker's one reader of the notifications stream,
which reads only while someone listens."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import signal
import time
import uuid

import aiohttp
import orjson
from aiohttp import web

from dispatcher.notify import Hub, Subscriber
from tests.dispatcher.conftest import Api, assigned, topic
from tests.kafka_io import eventually, read_topic

ADMIN, REP_TOKEN, SECRET = "adm-token", "rep-token", "hook-secret"


async def sse_events(response: aiohttp.ClientResponse, count: int) -> list[dict]:
    """The next `count` events of a stream (comments skipped), each as its fields."""
    found, fields = [], {}
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if "data" in fields:
                found.append({**fields, "data": orjson.loads(fields["data"])})
                if len(found) == count:
                    return found
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    return found


async def test_sse_history_lead_events_and_signed_webhooks(worker_factory, stack):
    hits: list[tuple[bytes, dict]] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append((await request.read(), dict(request.headers)))
        return web.Response(status=503 if len(hits) <= 2 else 204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    runner = web.AppRunner(receiver)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    worker = worker_factory(DISPATCHER_API_TOKENS=f"admin:{ADMIN},rep:r1:{REP_TOKEN}",
                            DISPATCHER_WEBHOOK_URL=f"http://127.0.0.1:{port}/hook", DISPATCHER_WEBHOOK_SECRET=SECRET,
                            DISPATCHER_WEBHOOK_BACKOFF_S="0.1")
    admin = aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"})
    rep = aiohttp.ClientSession(headers={"Authorization": f"Bearer {REP_TOKEN}"})
    try:
        api = Api(admin, worker.http_port)
        await api.rep("r1", capacity=5)
        await api.rep("r2", capacity=5, status="offline")
        events_url = f"{api.base}/v1/reps/r1/events"
        async with rep.get(f"{api.base}/v1/reps/r2/events") as other:
            assert other.status == 403
        async with rep.get(events_url) as stream:
            assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
            posted = time.monotonic()
            assert (await api.call("POST", "/v1/leads", {"id": "sse-1"}))[0] == 202
            (first,) = await asyncio.wait_for(sse_events(stream, 1), 5)
            took = time.monotonic() - posted
        assert first["event"] == "assignment" and first["data"]["lead_id"] == "sse-1" and first["data"]["rep_id"] == "r1"
        assert took < 1.0, f"the assignment reached the stream {took:.3f} s after the lead was posted"

        # Decided while nobody listened: the stream resumes after the last id the client saw.
        assert (await api.call("POST", "/v1/leads", {"id": "sse-2"}))[0] == 202
        await eventually(lambda: assigned(api, "sse-2"))
        async with rep.get(events_url, headers={"Last-Event-ID": first["id"]}) as stream:
            (second,) = await asyncio.wait_for(sse_events(stream, 1), 5)
        assert second["data"]["lead_id"] == "sse-2" and second["id"] > first["id"]

        async with rep.get(f"{api.base}/v1/reps/r1/history?limit=1") as page:
            body = await page.json()
        assert page.status == 200 and [e["lead_id"] for e in body["events"]] == ["sse-2"] and body["next_before"]
        async with rep.get(f"{api.base}/v1/reps/r1/history", params={"before": body["next_before"]}) as page:
            rest = await page.json()
        assert [(e["event"], e["lead_id"]) for e in rest["events"]] == [("assigned", "sse-1")]
        async with rep.get(f"{api.base}/v1/reps/r1/history?limit=0") as page:
            assert page.status == 400 and "limit" in (await page.json())["error"]

        archived = await read_topic(stack.broker_url, topic(worker, "lead-events"), until=lambda r: len(r) >= 4)
        mine = archived
        assert sorted((e["lead_id"], e["event"], e["event_id"]) for e in mine) == [
            ("sse-1", "accepted", "decided:sse-1#1"), ("sse-1", "assigned", "decided:sse-1#2"),
            ("sse-2", "accepted", "decided:sse-2#1"), ("sse-2", "assigned", "decided:sse-2#2")]

        await eventually(lambda: len([h for h in hits if h[1].get("X-Dispatcher-Event-Id") == first["id"]]) >= 3
                         or None, timeout_s=15)
        tries = [(body, headers) for body, headers in hits if headers["X-Dispatcher-Event-Id"] == first["id"]]
        body, headers = tries[-1]
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Dispatcher-Signature"] == expected
        assert orjson.loads(body)["lead_id"] == "sse-1"

        # A stopping worker ends the streams still open rather than wait for them.
        async with rep.get(events_url) as stream:
            await stream.content.readuntil(b"\n\n")  # ": connected"
            worker.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(stream.content.read(), 3) == b""
        await eventually(lambda: b"Gathering all futures" in worker.log_path.read_bytes() or None, timeout_s=3)
    finally:
        await admin.close()
        await rep.close()
        await runner.cleanup()



class CountedReads:
    """The real client, with its XREADs counted: whether the hub reads at all."""

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self.client, self.xreads = client, 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.client, name)

    async def xread(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.xreads += 1
        return await self.client.xread(*args, **kwargs)


async def notify(redis_client, stream: str, rep: str, n: int) -> str:
    return await redis_client.xadd(stream, {"rep": rep, "value": orjson.dumps({"type": "offer", "lead_id": f"l{n}"})})


async def next_lead(subscriber: Subscriber) -> str:
    entry_id, kind, event = await asyncio.wait_for(subscriber.queue.get(), 2)
    return event["lead_id"]


async def test_the_hub_reads_only_while_someone_listens_and_misses_nothing_after_a_subscribe(redis_client):
    stream = f"notify-{uuid.uuid4().hex[:8]}"
    reads = CountedReads(redis_client)
    hub = Hub(reads, stream, block_ms=50)  # type: ignore[arg-type]
    reader = asyncio.ensure_future(hub.run())
    try:
        await notify(redis_client, stream, "ana", 0)
        await asyncio.sleep(0.2)
        assert reads.xreads == 0, "nobody listens here, so nothing is read"

        ana = await hub.subscribe("ana")
        await notify(redis_client, stream, "ana", 1)  # at once: the reader has not read yet
        assert await next_lead(ana) == "l1", "what was written before the subscribe is the resume's, not the hub's"

        hub.unsubscribe(ana)
        await asyncio.sleep(0.2)
        resting = reads.xreads
        await notify(redis_client, stream, "ana", 2)
        await asyncio.sleep(0.2)
        assert reads.xreads == resting, "with the last listener gone, the reader rests"

        again = await hub.subscribe("ana")
        await notify(redis_client, stream, "ana", 3)
        assert await next_lead(again) == "l3"
        assert again.queue.empty()
    finally:
        # Awaited: a reader left pending in the suite's one event loop holds its end.
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(reader, 5)
