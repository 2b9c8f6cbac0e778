"""Fetched records that skip an offset wait until the broker fills it in, for a while.

The embedded broker (Tansu) can answer a fetch with records past an offset it has handed out but not
yet made readable. In a promotion at 500 leads/s, with the api process and a Kafka client writing
the same partition, a worker asked for offset 1739 and got 1740 onwards; 1739 held a lead, readable
by the time anyone looked (docs/benchmarks.md, eighth session). aiokafka takes such records,
faust takes the skipped offset for a compacted topic's hole and commits past it
(faust-streaming/faust#606), and the lead is never decided. Apache Kafka never shows an offset
before every earlier one is readable, and the holes it does show (transaction markers, compacted
records) are there for good, so there the guard stays off (patience 0).

With the guard on, a fetched run of records ends before its first hole, and the next fetch asks for
the hole again; a hole that stays open for `patience_s` is taken as a real one, with a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiokafka
from aiokafka.consumer.fetcher import FetchResult, PartitionRecords

from dispatcher.fetch_wait import asked_offsets

log = logging.getLogger(__name__)


class OffsetHoleGuard:
    """`on_hole(outcome)` hears of each hole: "refetched" (the run stopped before it) or
    "taken" (it stayed open for the whole patience)."""

    def __init__(self, patience_s: float, on_hole: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.patience_s = patience_s
        self._on_hole = on_hole
        self._clock = clock
        # Per partition, the hole its fetches stop before and when it was first met.
        self._open: dict[aiokafka.TopicPartition, tuple[int, float]] = {}

    def guard(self, tp: aiokafka.TopicPartition, records: PartitionRecords) -> None:
        """From now on `records` yields only what follows the fetch offset without a hole."""
        records._records_iterator = self._without_holes(tp, records, records._records_iterator,
                                                        records.next_fetch_offset)

    def _without_holes(self, tp: aiokafka.TopicPartition, records: PartitionRecords, fetched: Iterator[Any],
                       expected: int) -> Iterator[Any]:
        for record in fetched:
            if record.offset > expected and not self._taken(tp, expected, record.offset):
                # Where the partition's next fetch starts: aiokafka moved it past the record just read.
                records.next_fetch_offset = expected
                return
            if tp in self._open and record.offset >= self._open[tp][0]:
                # Filled: were the partition read again from before it (a rebalance), its clock starts anew.
                del self._open[tp]
            expected = record.offset + 1
            yield record

    def _taken(self, tp: aiokafka.TopicPartition, hole: int, next_offset: int) -> bool:
        """Whether the hole at `hole` has stayed open for the whole patience; the first meeting
        starts its clock."""
        now = self._clock()
        first_met = self._open.get(tp)
        if first_met is None or first_met[0] != hole:
            self._open[tp] = first_met = (hole, now)
        if now - first_met[1] < self.patience_s:
            self._tell("refetched")
            return False
        del self._open[tp]
        log.warning("%s: offsets %d to %d stayed unreadable for %.1f s; reading on from %d",
                    tp, hole, next_offset - 1, now - first_met[1], next_offset)
        self._tell("taken")
        return True

    def _tell(self, outcome: str) -> None:
        if self._on_hole:
            self._on_hole(outcome)

    def install(self, consumer: aiokafka.AIOKafkaConsumer) -> None:
        """Wraps a started consumer's fetch handling. aiokafka only fetches a partition with no
        records buffered, so a partition with records buffered after a response holds this
        response's records, not yet read."""
        fetcher = consumer._fetcher
        handle_response = fetcher._proc_fetch_request

        async def handle_and_guard(assignment: Any, node_id: int, request: Any) -> bool:
            delivered = await handle_response(assignment, node_id, request)
            for tp, _ in asked_offsets(request):
                result = fetcher._records.get(tp)
                if isinstance(result, FetchResult) and result._partition_records is not None:
                    self.guard(tp, result._partition_records)
            return delivered

        fetcher._proc_fetch_request = handle_and_guard
