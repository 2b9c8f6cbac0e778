"""Batches that form by themselves while the previous one is being decided, and the
acknowledgements that let faust commit a lead's offset only once it, and every lead before it on
its partition, is safely decided."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence

from faust.types import TP, EventT

log = logging.getLogger(__name__)
Decide = Callable[[Sequence[EventT]], Awaitable[list[asyncio.Future]]]
Ack = Callable[[EventT], Awaitable[object]]


class OffsetOrderAcks:
    """Acknowledges each partition's events strictly in the order they arrived, whatever order
    their batches finish in: an event that finished early waits here until every event that
    arrived before it on its partition has finished and been acknowledged.

    faust 0.15.3 commits past a gap in its acknowledged offsets when the gap is one offset wide
    or when the partition has no committed offset yet (faust-streaming/faust#606), so a hole it
    is shown may be committed and its lead never decided. Here it is never shown one: what is
    acknowledged is always the first part of what arrived, and faust delivers a partition's
    records in offset order, dropping only the tail it has not handed over yet (on a rebalance,
    after which it seeks back to the committed offset). faust acknowledges a record by itself
    only when its key or value cannot be decoded, which raw bytes (the dispatcher's serializer)
    never fail. An event that never finishes (its batch failed) holds back every later event of
    its partition for good."""

    def __init__(self, ack: Ack) -> None:
        self._ack = ack
        self._arrived: defaultdict[TP, deque[EventT]] = defaultdict(deque)
        self._finished: set[EventT] = set()
        # Two batches' acknowledgements must not interleave: while one awaits an ack, the other
        # could acknowledge a later offset of the same partition before this one's earlier one.
        self._acking = asyncio.Lock()

    def arrived(self, event: EventT) -> None:
        self._arrived[event.message.tp].append(event)

    async def finished(self, events: Sequence[EventT]) -> None:
        self._finished.update(events)
        async with self._acking:
            for tp in {event.message.tp for event in events}:
                waiting = self._arrived[tp]
                while waiting and waiting[0] in self._finished:
                    event = waiting.popleft()
                    self._finished.discard(event)
                    await self._ack(event)


class NaturalBatches:
    """Decides leads in batches that form by themselves: while a batch is in Redis, the leads
    that arrive meanwhile gather into the next, and a batch's first lead waits at most `linger_s`
    (from its arrival) for others to join it, unless the batch is full. A burst costs one round
    trip per batch.

    Why wait at all: a batch's own cost (the round trip, the tasks, the deliveries to await, the
    acknowledgements) is paid per batch, and at a few hundred leads a second most batches were one
    or two leads. At 800 leads/s, 5 ms of linger took the worker's CPU per lead from 0.85 to 0.76
    ms and p99 from 140 to 107 ms (2 rounds; docs/benchmarks.md, "The knee").

    Two batches may be in flight, so Redis runs one batch's scripts while this process reads,
    validates and announces the other's: throughput is bound by the slower of the two, not their
    sum. Each script is atomic and idempotent by lead id, so interleaving two batches' scripts
    keeps every invariant; only the order in which two near-simultaneous leads are decided may
    differ from their order on the topic, as it would across two workers.

    Each lead is acknowledged only once its decision is in Redis (its event is in the outbox from
    the same step) or its dead letter delivered, and only after every lead that arrived before it
    on its partition (OffsetOrderAcks): the second batch
    may finish first, but its acknowledgements wait for the first's. So faust, which commits what
    is acknowledged, never commits past a lead that is not yet decided, and a crash replays from
    the first undecided lead.

    A batch that fails (its decision raised, or its dead letters could not be delivered) is never
    acknowledged, nor is any later lead of its partitions, and the worker stops, loudly: the next
    worker to own those partitions replays them. Stopping only the agent would not do: faust
    restarts a crashed agent, and the new one would acknowledge the leads after the failed ones."""

    IN_FLIGHT = 2
    # tests/dispatcher/batches_worker.py puts acknowledging as batches finish here, to show the hole.
    Acks = OffsetOrderAcks

    def __init__(self, stream, max_size: int, decide: Decide, linger_s: float = 0.0) -> None:  # type: ignore[no-untyped-def]
        self._app, self._max_size, self._decide, self._linger_s = stream.app, max_size, decide, linger_s
        self._acks = self.Acks(stream.ack)
        self._pending: list[EventT] = []
        # When the first of the pending leads arrived (the loop's clock).
        self._pending_since = 0.0
        self._arrived, self._has_room = asyncio.Event(), asyncio.Event()
        self._has_room.set()
        self._slots = asyncio.Semaphore(self.IN_FLIGHT)
        self._running: set[asyncio.Task] = set()
        self._failure: BaseException | None = None
        self._stopping: asyncio.Future | None = None
        self._worker = asyncio.ensure_future(self._batch_forever())
        self._worker.add_done_callback(self._finished)

    async def add(self, event: EventT) -> None:
        if self._failure is not None:
            # The worker is stopping (_finished): take nothing more in, until the stop cancels us.
            await asyncio.get_running_loop().create_future()
        self._acks.arrived(event)
        if not self._pending:
            self._pending_since = asyncio.get_running_loop().time()
        self._pending.append(event)
        self._arrived.set()
        if len(self._pending) >= 4 * self._max_size:
            self._has_room.clear()
            await self._has_room.wait()

    async def _batch_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            await self._slots.acquire()
            linger_left_s = self._pending_since + self._linger_s - loop.time()
            if linger_left_s > 0 and len(self._pending) < self._max_size:
                await asyncio.sleep(linger_left_s)
            if self._failure is not None:
                return  # the worker is stopping: decide nothing more
            batch, self._pending = self._pending[: self._max_size], self._pending[self._max_size :]
            if self._pending:
                # What is left over has waited a batch already: the next one takes it at once.
                self._pending_since = loop.time() - self._linger_s
            else:
                self._arrived.clear()
            self._has_room.set()
            running = asyncio.ensure_future(self._decide_and_ack(batch))
            self._running.add(running)
            running.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        if task.cancelled() or task.exception() is None or self._failure is not None:
            return
        self._failure = task.exception()
        log.error("leads could not be decided and announced; stopping the worker, so that the next one "
                  "replays them and every later lead of their partitions", exc_info=self._failure)
        self._stopping = asyncio.ensure_future(self._app.crash(self._failure))

    async def _decide_and_ack(self, batch: list[EventT]) -> None:
        try:
            deliveries = await self._decide(batch)
        finally:
            self._slots.release()
        # A failed delivery raises here (events.py has logged which and why): a replay re-sends it.
        await asyncio.gather(*deliveries)
        await self._acks.finished(batch)
