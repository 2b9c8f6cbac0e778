"""What reaches a rep's own connections (GET /v1/reps/{id}/events): one reader of the
notifications stream per worker process, fanning each entry out to the local connections of its rep.

The step that decides writes the notification (lib.lua notify), so a rep hears of a lead decided
on any worker. The reader never waits for a connection: each has a bounded queue, and one that
falls that far behind is closed (its client resumes from its Last-Event-ID), so a slow or dead
client costs only its own stream.

The reader reads only while this process has a connection: every decision writes a notification,
and reading them all back for nobody cost a worker about 3 % of its time under a burst (and Redis
the XREADs). A first connection puts the reader at the stream's newest entry before it is
subscribed, so nothing written after it subscribed is missed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from dispatcher import metrics
from dispatcher.outbox import event_of

log = logging.getLogger(__name__)
QUEUE_SIZE = 256
# How many entries of the stream a resume reads at most: the notifications of every rep since the
# client's last event (the stream holds about lib.lua's NOTIFY_KEPT).
RESUME_READ_MAX = 20_000
Item = tuple[str, str, dict[str, Any]]


def kind_of(fields: dict[str, str], event: dict[str, Any]) -> str:
    """The SSE event name: `assignment` for an assignment or a move, else the event's own type."""
    return "assignment" if "row" in fields or "moved" in fields else str(event.get("type", "notification"))


def stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(eq=False)
class Subscriber:
    rep_id: str
    queue: asyncio.Queue[Item | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


class Hub:
    def __init__(self, client: aioredis.Redis, stream: str, *, block_ms: int = 1000) -> None:
        self.client, self.stream, self.block_ms = client, stream, block_ms
        self.subscribers: dict[str, set[Subscriber]] = {}
        # Where the reader goes on from; None while it rests (no connection here).
        self.position: str | None = None
        self.closed = False
        self._placing = asyncio.Lock()
        self._wanted = asyncio.Event()

    async def subscribe(self, rep_id: str) -> Subscriber:
        if self.position is None:
            async with self._placing:
                if self.position is None:
                    self.position = await self._newest()
                    self._wanted.set()
        subscriber = Subscriber(rep_id)
        self.subscribers.setdefault(rep_id, set()).add(subscriber)
        metrics.sse_connections.inc()
        if self.closed:
            self._end(subscriber)
        return subscriber

    async def _newest(self) -> str:
        newest = await self.client.xrevrange(self.stream, count=1)
        return newest[0][0] if newest else "0-0"

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscribers = self.subscribers.get(subscriber.rep_id, set())
        if subscriber in subscribers:
            subscribers.discard(subscriber)
            metrics.sse_connections.dec()
        if not subscribers:
            self.subscribers.pop(subscriber.rep_id, None)

    async def run(self) -> None:
        while True:
            # redis-py can swallow a cancellation that lands in a blocking read (it disconnects and
            # returns), which would leave this reader running through its process's shutdown.
            if asyncio.current_task().cancelling():
                raise asyncio.CancelledError
            await self._wanted.wait()
            try:
                reply = await self.client.xread({self.stream: self.position}, count=1000, block=self.block_ms)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the reader must outlive redis going away
                log.warning("notifications reader: %s; reading again shortly", exc)
                await asyncio.sleep(0.5)
                continue
            for _, entries in reply or ():
                for entry_id, fields in entries:
                    self.position = entry_id
                    self.fan_out(entry_id, fields)
            if not self.subscribers:
                self.position = None
                self._wanted.clear()

    def fan_out(self, entry_id: str, fields: dict[str, str]) -> None:
        subscribers = self.subscribers.get(fields.get("rep", ""))
        if not subscribers:
            return
        event = event_of(entry_id, fields)
        metrics.notifications_delay_ms.observe(max(0.0, time.time() * 1000 - stream_id(entry_id)[0]))
        item = (entry_id, kind_of(fields, event), event)
        for subscriber in list(subscribers):
            try:
                subscriber.queue.put_nowait(item)
            except asyncio.QueueFull:
                # Too slow: its connection ends, and its client resumes from the stream with
                # Last-Event-ID, rather than this reader waiting for it.
                metrics.sse_dropped_total.inc()
                self._end(subscriber)

    def close(self) -> None:
        """Ends every connection, and any made later, at once: a stopping process must not wait for
        streams that never end by themselves (its web server waits for every open one). Clients
        reconnect, to another process, with their Last-Event-ID."""
        self.closed = True
        for subscribers in list(self.subscribers.values()):
            for subscriber in list(subscribers):
                self._end(subscriber)

    def _end(self, subscriber: Subscriber) -> None:
        """Its connection ends at the sentinel, after nothing else: what it had not sent yet is
        its client's to resume."""
        self.unsubscribe(subscriber)
        while not subscriber.queue.empty():
            subscriber.queue.get_nowait()
        subscriber.queue.put_nowait(None)

    async def since(self, rep_id: str, last_id: str) -> list[Item]:
        """The rep's notifications after `last_id` still in the stream, oldest first."""
        found: list[Item] = []
        start, read = f"({last_id}", 0
        while read < RESUME_READ_MAX:
            entries = await self.client.xrange(self.stream, min=start, max="+", count=1000)
            if not entries:
                break
            read += len(entries)
            for entry_id, fields in entries:
                if fields.get("rep") == rep_id:
                    event = event_of(entry_id, fields)
                    found.append((entry_id, kind_of(fields, event), event))
            start = f"({entries[-1][0]}"
        return found
