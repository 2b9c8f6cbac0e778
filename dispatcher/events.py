"""Everything the dispatcher writes to Kafka goes through here, so every path that assigns a lead
(a decision, a drain after a close, a supervisor's move) emits the same event."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from dispatcher import metrics
from dispatcher.models import BAD_INPUT_KINDS, BadInput
from dispatcher.app import assignments_topic, leads_dlq_topic, rep_events_topic
from dispatcher.state.store import Assignment

for kind in BAD_INPUT_KINDS:
    metrics.leads_dlq_total.labels(kind)


async def publish_assignments(assignments: Iterable[Assignment], *, drained: bool = False) -> None:
    for assignment in assignments:
        if drained:
            metrics.leads_drained_total.labels(assignment.queue, assignment.strategy).inc()
        await assignments_topic.send(key=assignment.lead_id.encode(), value=orjson.dumps(assignment.event()))


async def publish_rep_event(kind: str, rep_id: str, **details: Any) -> None:
    event = {"type": kind, "rep_id": rep_id, **details}
    await rep_events_topic.send(key=rep_id.encode(), value=orjson.dumps(event))


async def publish_dead_letter(raw: bytes | None, error: BadInput, source: str) -> None:
    """Keeps the unusable input as text beside the reason, so nothing is silently dropped."""
    metrics.leads_dlq_total.labels(error.kind).inc()
    record = {
        "error": str(error),
        "kind": error.kind,
        "source": source,
        "value": (raw or b"").decode("utf-8", errors="replace"),
    }
    await leads_dlq_topic.send(key=source.encode(), value=orjson.dumps(record))
