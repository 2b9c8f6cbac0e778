"""A faust transport whose consumer waits `consumer_fetch_max_wait_ms` for a fetch, not faust's
hard-coded 1,500 ms. Some brokers (the embedded Tansu among them) answer a fetch only when that
wait is over even with data waiting, so this wait is the latency floor of every lead (docs/stack-notes.md).
It is a floor: on a long topic Tansu needs longer to find the data, so the wait grows while it
falls short, up to `consumer_fetch_max_wait_ceiling_ms` (dispatcher/fetch_wait.py).

Every stream process here (the dispatcher's workers, the benchmark's bare faust agent) runs as this
module sets faust up: its app, its worker, its consumer's handover of each message to the streams
and its producer's partitioner."""

from __future__ import annotations

import asyncio
import functools
import gc
import random
from collections.abc import Coroutine, Generator, Sequence
from typing import Any

import aiokafka
import faust
from aiokafka.partitioner import murmur2
from faust.tables import TableManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitResults

from dispatcher import metrics
from dispatcher.fetch_wait import AdaptiveFetchWait
from dispatcher.offset_holes import OffsetHoleGuard
from dispatcher.settings import Settings


class FetchWaitConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this attribute when start() builds its fetcher, which has not happened yet.
        consumer._fetch_max_wait_ms = self.app.settings.consumer_fetch_max_wait_ms
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        settings = self.app.settings
        metrics.consumer_fetch_wait_seconds.set(settings.consumer_fetch_max_wait_ms / 1000)
        AdaptiveFetchWait(
            settings.consumer_fetch_max_wait_ms,
            settings.consumer_fetch_max_wait_ceiling_ms,
            on_change=metrics.consumer_fetch_wait_seconds.set,
        ).install(self._consumer)
        if settings.consumer_offset_hole_patience_ms:
            OffsetHoleGuard(settings.consumer_offset_hole_patience_ms / 1000,
                            on_hole=lambda outcome: metrics.consumer_offset_holes_total.labels(outcome).inc(),
                            ).install(self._consumer)


class _CarriedOn:
    """Awaits a coroutine that already ran up to its first wait, carrying it on from there: what it
    waits for goes up to the awaiting task as if awaited there, and what the task sends back (or
    throws in: a cancellation) goes down to it."""

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self._coro, self._waiting_on = coro, waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting_on = self._coro, self._waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as thrown:
                resume = functools.partial(coro.throw, thrown)
            else:
                resume = functools.partial(coro.send, sent)
            try:
                waiting_on = resume()
            except StopIteration as finished:
                return finished.value


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> FetchWaitConsumerThread:
        return FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        """faust hands each message to its streams with `wait_first(handover, suspend_flow.wait())`,
        so that a rebalance can cut short a handover stuck on a full stream. mode runs both, and the
        consumer's stop and crash, as tasks of their own and cancels the losers: 40 us a message
        (a micro-benchmark), for a handover that almost never has to wait.

        So a call of that shape (two coroutines, no timeout) runs the handover at once, up to its
        first wait, as Python 3.12's eager tasks would: if it finishes there (2.8 us), that is the
        answer and the other coroutine is closed unstarted; if it must wait, a task carries it on
        from there and mode waits as it always did. At 1,000 leads/s the worker's CPU a lead went
        from 0.62-0.66 to 0.52-0.56 ms (4 rounds, docs/benchmarks.md)."""
        if (len(coros) != 2 or timeout is not None or not asyncio.iscoroutine(coros[0])
                or self._stopped.is_set() or self._crashed.is_set()):
            return await super().wait_first(*coros, timeout=timeout)
        handover, other = coros
        try:
            waiting_on = handover.send(None)
        except StopIteration as finished:
            _close_unstarted(other)
            return WaitResults([handover], [finished.value], False)
        except BaseException:
            _close_unstarted(other)
            raise
        return await super().wait_first(_CarriedOn(handover, waiting_on), other)


def _close_unstarted(awaitable: Any) -> None:
    """A coroutine never awaited would be reported as such when collected."""
    if asyncio.iscoroutine(awaitable):
        awaitable.close()


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


class TablelessTableManager(TableManager):
    """faust's table manager sleeps a second as it starts, so that tables declared late can still
    register before recovery. These apps declare no tables (state lives in Redis), and every start
    of a worker, or of one taking over after a crash, paid that second before joining its group."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


# A lead's decision goes out as several records under the lead's id (its assignment, its lead
# events), and aiokafka hashes each key in pure Python: a tenth of the producer's time, twice
# over for nothing. Recent keys keep their hash.
_key_hash = functools.lru_cache(maxsize=4096)(murmur2)


def key_partitioner(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """aiokafka's DefaultPartitioner (Kafka's own: murmur2 of the key), with recent hashes kept."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[(_key_hash(key) & 0x7FFFFFFF) % len(all_partitions)]


class Worker(faust.Worker):
    """faust's worker keeps a console spinner at log levels of WARNING and above, and for it puts the
    root logger at DEBUG: every debug call in faust and aiokafka then builds a record that the
    handlers throw away, some 7% of a bare faust agent's main thread at 1,000 events/s (py-spy).
    Workers here have no spinner, so a quieter log level is never a slower worker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None

    async def on_startup_finished(self) -> None:
        """What a worker builds to start (modules, faust's services, the clients) lives as long as
        it does, yet every full collection walked it again: some 100,000 objects, 60-70 ms with every
        lead of the moment waiting (gc.callbacks in a 750 leads/s knee step, one in each 10 s).
        Once started, the garbage is collected and the rest frozen out of later collections:
        the next full one took 1.3 ms."""
        gc.collect()
        gc.freeze()
        await super().on_startup_finished()


class StreamApp(faust.App):
    """faust as every stream processor here runs it: raw bytes in and out (msgspec validates, not
    faust), the broker timings and fetch wait from the settings. The benchmark's bare faust relay
    is one of these too, so its figures compare like with like."""

    def __init__(self, app_id: str, settings: Settings, **options: object) -> None:
        super().__init__(
            app_id,
            broker=settings.broker,
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=settings.topic_partitions,
            broker_session_timeout=settings.broker_session_timeout_s,
            broker_rebalance_timeout=settings.broker_rebalance_timeout_s,
            broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
            broker_commit_interval=settings.commit_interval_s,
            autodiscover=False,
            datadir=str(settings.data_dir),
            TableManager=TablelessTableManager,
            producer_partitioner=key_partitioner,
            **options,
        )
        self.settings = settings

    def _new_transport(self) -> faust.types.TransportT:
        return Transport(self.conf.broker_consumer, self)
