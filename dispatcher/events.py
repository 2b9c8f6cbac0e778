"""Everything the dispatcher writes to Kafka goes through here, so every path that assigns a lead
(a decision, a drain after a close, a supervisor's move) emits the same event.

Records go straight to the producer rather than through faust's Topic.send, whose per-record
bookkeeping (FutureMessage, sensors, callbacks) cost more than the decision itself in profiles.
Each function returns the delivery futures: the lead agent acknowledges a lead only once its
event is delivered; other callers may leave them, and a failed delivery is logged either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import orjson
from faust.types import ProducerT, TopicT

from dispatcher import metrics
from dispatcher.app import app, assignments_topic, leads_dlq_topic, leads_topic, rep_events_topic
from dispatcher.models import BAD_INPUT_KINDS, BadInput
from dispatcher.state.store import Assignment

log = logging.getLogger(__name__)
Delivery = asyncio.Future

for kind in BAD_INPUT_KINDS:
    metrics.leads_dlq_total.labels(kind)


def _log_failure(delivery: Delivery) -> None:
    if not delivery.cancelled() and delivery.exception() is not None:
        log.error("an event was not delivered to kafka: %s", delivery.exception())


async def _produce(producer: ProducerT, topic: TopicT, key: str, value: Any) -> Delivery:
    delivery = await producer.send(
        topic.get_topic_name(), key.encode(), orjson.dumps(value), partition=None, timestamp=None, headers=None
    )
    delivery.add_done_callback(_log_failure)
    return delivery


async def publish_lead(lead: dict[str, Any]) -> Delivery:
    """A lead accepted over HTTP, onto the topic every lead is decided from."""
    return await _produce(await app.maybe_start_producer(), leads_topic, lead["id"], lead)


async def publish_assignments(assignments: Iterable[Assignment], *, drained: bool = False) -> list[Delivery]:
    deliveries = []
    producer = await app.maybe_start_producer()
    for assignment in assignments:
        if drained:
            metrics.leads_drained_total.labels(assignment.queue, assignment.strategy).inc()
            metrics.waited_before_assignment_seconds.observe(
                (assignment.assigned_at_ms - assignment.accepted_at_ms) / 1000)
        if assignment.reassigned:
            metrics.leads_reassigned_total.labels(assignment.queue, assignment.strategy).inc()
        deliveries.append(await _produce(producer, assignments_topic, assignment.lead_id, assignment.event()))
    return deliveries


async def publish_rep_event(kind: str, rep_id: str, **details: Any) -> Delivery:
    return await _produce(await app.maybe_start_producer(), rep_events_topic, rep_id, {"type": kind, "rep_id": rep_id, **details})


async def publish_dead_letter(raw: bytes | None, error: BadInput, source: str) -> Delivery:
    """Keeps the unusable input as text beside the reason, so nothing is silently dropped."""
    metrics.leads_dlq_total.labels(error.kind).inc()
    record = {
        "error": str(error),
        "kind": error.kind,
        "source": source,
        "value": (raw or b"").decode("utf-8", errors="replace"),
    }
    return await _produce(await app.maybe_start_producer(), leads_dlq_topic, source, record)
