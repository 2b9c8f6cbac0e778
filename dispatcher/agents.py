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
from dispatcher.batches import NaturalBatches
from dispatcher.events import Delivery, publish_assignments, publish_dead_letter
from dispatcher.models import BadInput, routable_lead
from dispatcher.routing import RoutingError, load_routing
from dispatcher.state.store import Decision

log = logging.getLogger(__name__)
RETRY_DELAYS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
received_from_kafka = metrics.leads_received_total.labels("kafka")


@app.agent(leads_topic)
async def assign_leads(stream):  # type: ignore[no-untyped-def]
    batches = NaturalBatches(stream, settings.batch_max, decide)
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
