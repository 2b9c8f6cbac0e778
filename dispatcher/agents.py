"""Stream processors: `assign_leads` turns each lead on the `leads` topic into one atomic decision
in Redis and one assignment event; `adopt_routing` and `reload_routing` keep queue membership in
step with the routing file.

Delivery is at-least-once: a lead's offset is acknowledged (and so committed) only after its
decision is made and its event delivered to the broker. A redelivery after a crash
carries the same topic/partition/offset, which the decision script recognises as a replay: it
returns the recorded decision, changes nothing, and the event goes out again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence

from faust.types import EventT
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dispatcher import metrics
from dispatcher.app import app, assignments_topic, leads_dlq_topic, leads_topic, rep_events_topic, settings, store
from dispatcher.events import Delivery, publish_assignments, publish_dead_letter
from dispatcher.models import BadInput, routable_lead
from dispatcher.routing import RoutingError, load_routing
from dispatcher.state.store import Decision

log = logging.getLogger(__name__)
RETRY_DELAYS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
received_from_kafka = metrics.leads_received_total.labels("kafka")


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

    def __init__(self, stream, max_size: int) -> None:  # type: ignore[no-untyped-def]
        self._stream, self._max_size = stream, max_size
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
            deliveries = await decide(batch)
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


@app.agent(leads_topic)
async def assign_leads(stream):  # type: ignore[no-untyped-def]
    batches = NaturalBatches(stream, settings.batch_max)
    async for event in stream.noack().events():
        await batches.add(event)


async def decide(events: Sequence[EventT]) -> list[Delivery]:
    """One batch: refusals to the DLQ, one pipelined round trip of decision scripts, an event for
    each assignment made. Returns the delivery of every record it wrote."""
    received_from_kafka.inc(len(events))
    deliveries, routable = [], []
    for event in events:
        message = event.message
        source = f"{message.topic}/{message.partition}@{message.offset}"
        try:
            if event.value is None:
                raise BadInput("record has no value", "empty")
            lead = routable_lead(event.value, store.routing, max_bytes=settings.max_body_bytes)
        except BadInput as error:
            deliveries.append(await publish_dead_letter(event.value, error, source))
            continue
        routable.append((lead, source, message.timestamp))
    if not routable:
        return deliveries
    started = time.perf_counter()
    decisions = await _decide_until_redis_answers([(lead, source) for lead, source, _ in routable])
    per_decision_ms = (time.perf_counter() - started) * 1000 / len(decisions)
    decided_at_s = time.time()
    announced = []
    outcomes: Counter[tuple[str, str, str]] = Counter()
    for (_, _, produced_at_s), decision in zip(routable, decisions, strict=True):
        metrics.decision_duration_ms.observe(per_decision_ms)
        strategy = decision.assignment.strategy if decision.assignment else ""
        outcomes[decision.queue, strategy, decision.status if decision.kind == "new" else decision.kind] += 1
        if decision.assignment and decision.kind != "duplicate":
            announced.append(decision.assignment)
            metrics.lead_to_assignment_ms.observe(max(0.0, decided_at_s - produced_at_s) * 1000)
    # Counted per batch: a labelled child looked up per lead showed in profiles.
    for labels, count in outcomes.items():
        metrics.leads_decided_total.labels(*labels).inc(count)
    return deliveries + await publish_assignments(announced)


async def _decide_until_redis_answers(deliveries: list) -> list[Decision]:
    """Redis being briefly away must not drop or skip leads: the batch is retried (each decision
    is idempotent by lead id) and the offsets wait, so a long outage backs up in Kafka, not here."""
    attempt = 0
    while True:
        try:
            return await store.assign_many(deliveries)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
            log.warning("redis unavailable (%s); retrying %d leads in %.2f s", exc, len(deliveries), delay)
            attempt += 1
            await asyncio.sleep(delay)


@app.task
async def declare_topics() -> None:
    """Every topic exists, with the configured partitions, before anyone reads it: consumers of
    `assignments` or `leads-dlq` may subscribe before the first record is written."""
    for topic in (leads_topic, assignments_topic, rep_events_topic, leads_dlq_topic):
        await topic.maybe_declare()


@app.task
async def adopt_routing() -> None:
    """A routing file the roster was not yet sorted by (first start, or changed while no worker
    ran) rebuilds every queue's members before leads depend on them."""
    if not await store.routing_is_current():
        log.info("routing %s is new here: rebuilding queue membership", store.routing.source)
        await publish_assignments(await store.rebuild_queues(), drained=True)


_routing_mtime = settings.routing.stat().st_mtime if settings.routing else None


@app.timer(interval=settings.routing_poll_s)
async def reload_routing() -> None:
    """Rules change by editing the file, not the code. A file that fails the check is refused
    in words in the log and the metrics, and the routing in force stays as it was."""
    global _routing_mtime
    if settings.routing is None:
        return
    try:
        mtime = settings.routing.stat().st_mtime
    except OSError as exc:
        log.error("routing file %s cannot be read (%s); keeping the routing in force", settings.routing, exc)
        return
    if mtime == _routing_mtime:
        return
    _routing_mtime = mtime
    try:
        routing = load_routing(settings.routing)
    except RoutingError as exc:
        metrics.routing_reloads_total.labels("refused").inc()
        log.error("routing file refused, keeping the routing in force: %s", exc)
        return
    if routing.fingerprint == store.routing.fingerprint:
        return
    store.use_routing(routing)
    await publish_assignments(await store.rebuild_queues(), drained=True)
    metrics.routing_reloads_total.labels("applied").inc()
    log.info("routing reloaded from %s: %d queues", settings.routing, len(routing.queues))
