"""A consumer's fetch wait that lengthens while the broker falls short, and shortens again.

The fetch wait is the latency floor on the embedded broker (Tansu): it answers a fetch with no data
only when the wait is over (docs/stack-notes.md), so the dispatcher keeps it at a few ms. But Tansu also lists
every batch of a partition on each fetch that finds data, and gives that listing up when the wait
runs out: at 5 ms a partition of 5,000 one-record batches takes seconds to read, and one of 15,000
gives nothing, ever (a 100,000-batch topic: nothing in 120 s at 5 ms, read whole in 1.5 s at
500 ms). A fixed wait must choose between fast on short topics and alive on long ones.

So the wait adapts. A fetch that comes back empty for a partition whose high watermark lies past
the position asked for is one the broker ran out of time on: the wait doubles, up to a ceiling.
Each fetch that brings records takes a tenth off, down to the configured floor. Apache Kafka
answers as soon as data is there, so there the wait never leaves its floor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiokafka

GROWTH = 2.0
DECAY = 0.9


class AdaptiveFetchWait:
    """`on_change` hears the new wait in seconds whenever it moves (a gauge's `set`)."""

    def __init__(self, floor_ms: int, ceiling_ms: int, on_change: Callable[[float], None] | None = None) -> None:
        self.floor_ms, self.ceiling_ms = floor_ms, max(floor_ms, ceiling_ms)
        self.wait_ms = float(floor_ms)
        self._on_change = on_change

    def after_fetch(self, *, starved: bool, delivered: bool) -> int:
        """The wait in ms for the next fetch, given what the last one did."""
        if starved:
            # From a floor of 0 the wait could never grow by multiplying alone.
            wait_ms = min(self.ceiling_ms, max(1.0, self.wait_ms) * GROWTH)
        elif delivered:
            wait_ms = max(self.floor_ms, self.wait_ms * DECAY)
        else:
            wait_ms = self.wait_ms
        if wait_ms != self.wait_ms:
            self.wait_ms = wait_ms
            if self._on_change:
                self._on_change(wait_ms / 1000)
        return round(wait_ms)

    def install(self, consumer: aiokafka.AIOKafkaConsumer) -> None:
        """Wraps a started consumer's fetch handling. aiokafka builds each fetch request from its
        fetcher's `_fetch_max_wait_ms`, and only fetches a partition with no records buffered, so
        a partition with records buffered after a response is one this response delivered to."""
        fetcher = consumer._fetcher
        handle_response = fetcher._proc_fetch_request

        async def handle_and_adapt(assignment: Any, node_id: int, request: Any) -> bool:
            asked = asked_offsets(request)
            answered_before = {tp: _answered_at(assignment, tp) for tp, _ in asked}
            delivered = await handle_response(assignment, node_id, request)
            starved = assignment.active and any(
                _starved(assignment.state_value(tp), offset, answered_before[tp], buffered=tp in fetcher._records)
                for tp, offset in asked
            )
            fetcher._fetch_max_wait_ms = self.after_fetch(starved=starved, delivered=bool(delivered))
            return delivered

        fetcher._fetch_max_wait_ms = round(self.wait_ms)
        fetcher._proc_fetch_request = handle_and_adapt


def asked_offsets(request: Any) -> list[tuple[aiokafka.TopicPartition, int]]:
    """Each partition an aiokafka fetch request asks for, with the offset it asks from."""
    return [(aiokafka.TopicPartition(topic, partition), offset)
            for topic, partitions in request.topics for partition, offset, _ in partitions]


def _answered_at(assignment: Any, tp: aiokafka.TopicPartition) -> int | None:
    state = assignment.state_value(tp)
    return state.timestamp if state is not None else None


def _starved(state: Any, offset: int, answered_before: int | None, *, buffered: bool) -> bool:
    """aiokafka stamps a partition's state (wall-clock ms) only when it takes an answer without
    error, so an unchanged stamp means a failed fetch, whose high watermark is an old one; two
    answers in one millisecond can hide a starved fetch, never invent one. A response for a
    position that moved meanwhile is discarded unread, whatever it held."""
    return (
        state is not None
        and state.timestamp != answered_before
        and state.has_valid_position
        and state.position == offset
        and not buffered
        and (state.highwater or 0) > offset
    )
