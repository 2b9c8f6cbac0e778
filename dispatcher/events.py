"""Records the dispatcher writes to Kafka itself: leads accepted over HTTP, onto the topic every
lead is decided from; each lead's own decision, announced by the worker that read the lead (its
offset is acknowledged only once the event is delivered, so a crash replays and re-announces it),
as its assignment and as the lead events of the history entries the decision wrote;
and inputs that could not be used, onto the dead-letter topic. Every other event (drains, moves,
presence, profiles, closes) has no offset behind it: the Lua step that makes the change writes it
into the outbox, and dispatcher/outbox.py relays it.

Records go straight to the producer rather than through faust's Topic.send, whose per-record
bookkeeping (FutureMessage, sensors, callbacks) cost more than the decision itself in profiles.
Each function returns the delivery future; a failed delivery is logged either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from dispatcher import metrics
from dispatcher.app import app, assignments_topic, lead_events_topic, leads_dlq_topic, leads_topic
from dispatcher.models import BAD_INPUT_KINDS, BadInput
from dispatcher.state.results import Assignment

log = logging.getLogger(__name__)
Delivery = asyncio.Future
Headers = Sequence[tuple[str, bytes]]

# A dead letter keeps this much of the unusable value: enough to see what was sent, small enough
# that the record always fits the producer's size limit, however large the original was.
DEAD_LETTER_VALUE_CHARS = 16 * 1024
DEAD_LETTER_HEADER_BYTES = 64 * 1024

for kind in BAD_INPUT_KINDS:
    metrics.leads_dlq_total.labels(kind)


def _log_failure(delivery: Delivery) -> None:
    if not delivery.cancelled() and delivery.exception() is not None:
        log.error("a record was not delivered to kafka: %s", delivery.exception())


async def produce(topic: str, key: bytes | None, value: bytes, headers: Headers | None = None) -> Delivery:
    producer = await app.maybe_start_producer()
    delivery = await producer.send(topic, key, value, partition=None, timestamp=None, headers=headers)
    delivery.add_done_callback(_log_failure)
    return delivery


async def publish_lead(lead: dict[str, Any]) -> None:
    """A lead accepted over HTTP, onto the topic every lead is decided from; returns once the
    broker has it, raises when it refused it."""
    await (await produce(leads_topic.get_topic_name(), lead["id"].encode(), orjson.dumps(lead)))


async def announce_decisions(assignments: Iterable[Assignment]) -> list[Delivery]:
    producer = await app.maybe_start_producer()
    topic = assignments_topic.get_topic_name()
    deliveries = []
    for assignment in assignments:
        event = {**assignment.event(), "event_id": assignment.decision_event_id}
        delivery = await producer.send(topic, assignment.lead_id.encode(), orjson.dumps(event),
                                       partition=None, timestamp=None, headers=None)
        delivery.add_done_callback(_log_failure)
        deliveries.append(delivery)
    return deliveries


async def announce_lead_events(events: Iterable[dict[str, Any]]) -> list[Delivery]:
    """The history entries of leads' own decisions (each with its event id, the same on a replay)."""
    producer = await app.maybe_start_producer()
    topic = lead_events_topic.get_topic_name()
    deliveries = []
    for event in events:
        delivery = await producer.send(topic, event["lead_id"].encode(), orjson.dumps(event),
                                       partition=None, timestamp=None, headers=None)
        delivery.add_done_callback(_log_failure)
        deliveries.append(delivery)
    return deliveries


async def publish_dead_letter(raw: bytes | None, error: BadInput, source: str, *,
                              key: bytes | None = None, headers: Headers | None = None) -> Delivery:
    """Keeps the unusable input beside the reason, so nothing is silently dropped: its key and
    headers as they came (the key says whose record it was), its value as text, cut short if long."""
    metrics.leads_dlq_total.labels(error.kind).inc()
    text = (raw or b"").decode("utf-8", errors="replace")
    kept_headers = list(headers or ())
    if sum(len(name) + len(value or b"") for name, value in kept_headers) > DEAD_LETTER_HEADER_BYTES:
        kept_headers = []
    record = {
        "error": str(error),
        "kind": error.kind,
        "source": source,
        "value": text[:DEAD_LETTER_VALUE_CHARS],
        "value_bytes": len(raw or b""),
        "truncated": len(text) > DEAD_LETTER_VALUE_CHARS,
        "headers_dropped": len(kept_headers) < len(headers or ()),
    }
    return await produce(leads_dlq_topic.get_topic_name(), key if key is not None else source.encode(),
                         orjson.dumps(record), kept_headers or None)


def count_assignments(assignments: Iterable[Assignment]) -> None:
    """Counts assignments made outside a lead's own decision: moved by a supervisor, or drained
    from a queue when capacity freed."""
    for assignment in assignments:
        if assignment.reassigned:
            metrics.leads_reassigned_total.labels(assignment.queue, assignment.strategy).inc()
        else:
            metrics.leads_drained_total.labels(assignment.queue, assignment.strategy).inc()
            metrics.waited_before_assignment_seconds.observe(
                (assignment.assigned_at_ms - assignment.accepted_at_ms) / 1000)
