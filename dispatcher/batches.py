"""Batches that form by themselves while the previous one is being decided, and the
acknowledgements that let faust commit a lead's offset only once it is safely decided."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from faust.types import EventT

log = logging.getLogger(__name__)
Decide = Callable[[Sequence[EventT]], Awaitable[list[asyncio.Future]]]


class NaturalBatches:
    """Decides leads in batches that form by themselves: while a batch is in Redis, the leads
    that arrive meanwhile gather into the next. A lone lead is decided at once (no window to
    wait out, unlike faust's take()), and a burst costs one round trip per batch.

    Two batches may be in flight, so Redis runs one batch's scripts while this process reads,
    validates and announces the other's: throughput is bound by the slower of the two, not their
    sum. Each script is atomic and idempotent by lead id, so interleaving two batches' scripts
    keeps every invariant; only the order in which two near-simultaneous leads are decided may
    differ from their order on the topic, as it would across two workers.

    Each lead is acknowledged only once its decision is made and its event delivered, so a crash
    replays it. Acknowledgements may arrive out of order; faust commits only up to the first gap."""

    IN_FLIGHT = 2

    def __init__(self, stream, max_size: int, decide: Decide) -> None:  # type: ignore[no-untyped-def]
        self._stream, self._max_size, self._decide = stream, max_size, decide
        self._pending: list[EventT] = []
        self._arrived, self._has_room = asyncio.Event(), asyncio.Event()
        self._has_room.set()
        self._slots = asyncio.Semaphore(self.IN_FLIGHT)
        self._running: set[asyncio.Task] = set()
        self._failure: BaseException | None = None
        self._worker = asyncio.ensure_future(self._batch_forever())

    async def add(self, event: EventT) -> None:
        if self._failure is not None:
            raise self._failure  # a failed decision stops the agent, loudly, with its offset uncommitted
        if self._worker.done():
            self._worker.result()
        self._pending.append(event)
        self._arrived.set()
        if len(self._pending) >= 4 * self._max_size:
            self._has_room.clear()
            await self._has_room.wait()

    async def _batch_forever(self) -> None:
        while True:
            await self._arrived.wait()
            await self._slots.acquire()
            batch, self._pending = self._pending[: self._max_size], self._pending[self._max_size :]
            if not self._pending:
                self._arrived.clear()
            self._has_room.set()
            running = asyncio.ensure_future(self._decide_and_ack(batch))
            self._running.add(running)
            running.add_done_callback(self._finished)

    def _finished(self, running: asyncio.Task) -> None:
        self._running.discard(running)
        if not running.cancelled() and running.exception() is not None and self._failure is None:
            self._failure = running.exception()

    async def _decide_and_ack(self, batch: list[EventT]) -> None:
        try:
            deliveries = await self._decide(batch)
        finally:
            self._slots.release()
        try:
            await asyncio.gather(*deliveries)
        except Exception:  # noqa: BLE001 - events.py has logged which delivery failed and why
            # Unacknowledged, the offsets are not committed past the first of these leads: the
            # next worker to own the partition replays them, and replays only re-send the events.
            log.error("%d leads stay unacknowledged until a restart or rebalance replays them", len(batch))
            return
        for event in batch:
            await self._stream.ack(event)
