"""The outbox relay: every event a Lua step writes into the outbox stream, in the same atomic
step as the change it announces, reaches Kafka at least once, from whichever worker is alive.

Workers read the stream as one Redis consumer group, so each event is taken by one of them. An
entry is acknowledged and deleted only once Kafka has it; entries a worker took and never
acknowledged (it died, or Kafka refused) are taken again: by the same worker on its next round,
or by another once they have been idle for `claim_idle_ms`. Every event carries `event_id` (the
outbox entry id, the same on every resend), so consumers drop the copies a resend may make.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from dispatcher import metrics
from dispatcher.state.layout import is_unavailable
from dispatcher.state.results import Assignment, lead_event

log = logging.getLogger(__name__)
GROUP = "relay"
Produce = Callable[[str, bytes, bytes], Awaitable[asyncio.Future]]
Entry = tuple[str, dict[str, str]]
RETRY_DELAYS_S = (0.05, 0.25, 1.0, 2.0)


def event_of(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """The public event an outbox entry announces: an assignment row becomes the README's
    assignment event (its reason in words), any other value goes out as the script wrote it."""
    if "row" in fields or "moved" in fields:
        row = orjson.loads(fields.get("row") or fields["moved"])
        event = Assignment.from_script(row, reassigned="moved" in fields).event()
    else:
        event = lead_event(orjson.loads(fields["value"]))
    event["event_id"] = entry_id
    return event


class OutboxRelay:
    """Also the shape of every relay of a stream read as a consumer group (dispatcher/webhooks.py):
    take entries (own pending first, then those others left idle, then new ones), deliver them,
    acknowledge them."""

    GROUP = GROUP
    # Where a new group starts: from the stream's start, so entries written before any worker ever
    # ran are relayed too.
    START = "0"

    def __init__(self, client: aioredis.Redis, stream: str, consumer: str, produce: Produce | None,
                 topic_name: Callable[[str], str] | None, *, batch: int = 500, block_ms: int = 1000,
                 claim_idle_ms: int = 5000) -> None:
        self.client, self.stream, self.consumer = client, stream, consumer
        self.produce, self.topic_name = produce, topic_name
        self.batch, self.block_ms, self.claim_idle_ms = batch, block_ms, claim_idle_ms
        # Start by what this consumer name took before a restart and never acknowledged.
        self._own_pending = True
        self._next_claim = 0.0
        self._group_ready = False

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self.relay_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the relay must outlive any one failure
                self.count_failure("redis" if is_unavailable(exc) else type(exc).__name__)
                log.warning("%s relay: %s; the events stay in the stream and are sent again", self.GROUP, exc)
                self._own_pending = True
                await asyncio.sleep(RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)])
                failures += 1

    def count_failure(self, kind: str) -> None:
        metrics.outbox_relay_failures_total.labels(kind).inc()

    async def relay_once(self) -> int:
        """One round: takes a batch of entries (waiting up to `block_ms` for any), delivers them,
        acknowledges what was delivered. Returns how many were taken."""
        await self._ensure_group()
        entries = await self._take()
        if not entries:
            return 0
        await self.deliver(entries)
        await self.acknowledge(entries)
        return len(entries)

    async def deliver(self, entries: list[Entry]) -> None:
        deliveries = []
        for entry_id, fields in entries:
            topic, key = fields.get("topic", "leads-dlq"), fields.get("key", entry_id)
            try:
                event = event_of(entry_id, fields)
            except Exception as exc:  # noqa: BLE001 - one unreadable entry must not hold back the rest
                log.error("outbox entry %s cannot be read (%s); it goes to leads-dlq as it is", entry_id, exc)
                self.count_failure("unreadable")
                topic, event = "leads-dlq", {"error": f"outbox entry cannot be read: {exc}", "kind": "unrelayable",
                                             "source": f"outbox {entry_id}", "value": fields, "event_id": entry_id}
            deliveries.append(await self.produce(self.topic_name(topic), key.encode(), orjson.dumps(event)))
        # A failed delivery raises here and nothing of the batch is acknowledged: all of it is
        # sent again, and consumers drop the copies by event_id.
        await asyncio.gather(*deliveries)

    async def acknowledge(self, entries: list[Entry]) -> None:
        ids = [entry_id for entry_id, _ in entries]
        pipe = self.client.pipeline(transaction=False)
        pipe.xack(self.stream, self.GROUP, *ids).xdel(self.stream, *ids).xlen(self.stream)
        *_, backlog = await pipe.execute()
        now_ms = time.time() * 1000
        for entry_id, fields in entries:
            metrics.outbox_events_relayed_total.labels(fields.get("topic", "leads-dlq")).inc()
            metrics.outbox_delay_ms.observe(max(0.0, now_ms - int(entry_id.split("-", 1)[0])))
        metrics.outbox_backlog_events.set(backlog)

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.client.xgroup_create(self.stream, self.GROUP, id=self.START, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _take(self) -> list[Entry]:
        if self._own_pending:
            entries = await self._read("0", block_ms=None)
            if entries:
                return entries
            self._own_pending = False
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.claim_idle_ms / 1000
            _, claimed, *_ = await self.client.xautoclaim(self.stream, self.GROUP, self.consumer, self.claim_idle_ms,
                                                          start_id="0-0", count=self.batch)
            if claimed:
                log.info("%s relay: took over %d events another worker left unsent", self.GROUP, len(claimed))
                return [(entry_id, fields) for entry_id, fields in claimed if fields]
        return await self._read(">", block_ms=self.block_ms)

    async def _read(self, start: str, *, block_ms: int | None) -> list[Entry]:
        reply = await self.client.xreadgroup(self.GROUP, self.consumer, {self.stream: start}, count=self.batch,
                                             block=block_ms)
        entries = [entry for _, stream_entries in reply or () for entry in stream_entries]
        # An entry deleted while pending comes back without fields: sent already, only its
        # acknowledgement was lost.
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:
            await self.client.xack(self.stream, self.GROUP, *gone)
        return [(entry_id, fields) for entry_id, fields in entries if fields]
