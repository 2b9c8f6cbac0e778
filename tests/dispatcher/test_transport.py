"""The consumer's fetch wait is the setting, not faust's hard-coded 1,500 ms (docs/stack-notes.md: on the
embedded broker that wait is every lead's latency floor); its handover of each message to the streams
runs at once where it need not wait, and is cut short as faust's is where it must."""

from __future__ import annotations

import asyncio
import inspect
import logging
import statistics
import subprocess
import sys
import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st
from mode.services import WaitResults
from prometheus_client import REGISTRY

from dispatcher.app import DispatcherApp
from dispatcher.embedded import free_port
from dispatcher.settings import Settings
from dispatcher.transport import FetchWaitConsumerThread, StreamApp, Worker, key_partitioner
from tests.kafka_io import bootstrap


async def test_the_dispatcher_app_uses_the_transport(stack, unique_prefix):
    app = DispatcherApp(Settings(broker=stack.broker_url, consumer_fetch_max_wait_ms=7, topic_prefix=unique_prefix))
    consumer_thread = app.consumer._thread
    assert isinstance(consumer_thread, FetchWaitConsumerThread)
    assert consumer_thread._create_worker_consumer(app.transport)._fetch_max_wait_ms == 7


async def test_an_agent_gets_each_message_without_waiting_out_faust_default(stack, unique_prefix, tmp_path):
    # Tansu holds a group's first JoinGroup for half the session timeout: 1.5 s here, not 5.
    settings = Settings(
        broker=stack.broker_url,
        consumer_fetch_max_wait_ms=5,
        topic_prefix=unique_prefix,
        broker_session_timeout_s=3,
        broker_rebalance_timeout_s=3,
        data_dir=tmp_path,
    )
    # The least faust App that uses the transport, with no web server and no Redis.
    app = StreamApp(f"{unique_prefix}tiny", settings, web_enabled=False, web_port=free_port())
    topic_name = settings.topic("ping")
    arrivals: asyncio.Queue[float] = asyncio.Queue()

    @app.agent(app.topic(topic_name))
    async def note_arrival(stream):
        async for _ in stream:
            arrivals.put_nowait(time.monotonic())

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(stack.broker_url), linger_ms=0)
    await app.start()
    await producer.start()
    try:
        running_consumer = app.consumer._thread._consumer
        assert running_consumer._fetcher._fetch_max_wait_ms == 5
        # The thread's on_start wrapped the fetcher's response handling in the adaptive wait.
        assert "_proc_fetch_request" in vars(running_consumer._fetcher)
        assert REGISTRY.get_sample_value("dispatcher_consumer_fetch_wait_seconds") == 0.005
        latencies = []
        for _ in range(20):
            sent = time.monotonic()
            await producer.send_and_wait(topic_name, b"ping")
            latencies.append(await asyncio.wait_for(arrivals.get(), timeout=10) - sent)
    finally:
        await producer.stop()
        await app.stop()
    # One message at a time through faust's default wait takes ~0.75 s each on Tansu; with 5 ms, ~5 ms.
    assert statistics.median(latencies) < 0.25, f"median {statistics.median(latencies) * 1000:.0f} ms"


def test_a_worker_at_a_quiet_log_level_builds_no_debug_records(tmp_path):
    app = StreamApp("quiet-worker", Settings(data_dir=tmp_path), web_enabled=False, web_port=free_port())
    worker = Worker(app, loglevel="WARNING", quiet=True)
    logger = logging.getLogger(f"quiet-worker-{tmp_path.name}")
    logger.addHandler(logging.NullHandler())

    worker.on_setup_root_logger(logger, logging.WARNING)

    assert not logger.isEnabledFor(logging.DEBUG)
    assert worker.spinner is None


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.none(), st.binary(max_size=64)), count=st.integers(min_value=1, max_value=64))
def test_keys_land_where_kafkas_own_partitioner_puts_them(key, count):
    """Consumers of assignments and lead-events rely on a lead's records sharing its partition, as
    Kafka's clients place them: the cached hash must not move any key."""
    partitions = list(range(count))
    if key is None:
        assert key_partitioner(key, partitions, partitions) in partitions
    else:
        assert key_partitioner(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)
        assert key_partitioner(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_every_stream_app_partitions_with_the_cached_hash():
    assert StreamApp("partitioner-check", Settings()).conf.producer_partitioner is key_partitioner


STARTED_WORKER = """
import asyncio, gc, sys, weakref
from dispatcher.settings import Settings
from dispatcher.transport import StreamApp, Worker

class Garbage:
    pass

cycle = Garbage()
cycle.itself = cycle
dropped = weakref.ref(cycle)
del cycle
app = StreamApp("frozen-worker", Settings(data_dir=sys.argv[1]), web_enabled=False, web_port=int(sys.argv[2]))
asyncio.run(Worker(app, loglevel="WARNING", quiet=True).on_startup_finished())
print(gc.get_freeze_count(), dropped() is None)
"""


def test_a_started_worker_collects_its_garbage_and_freezes_the_rest(tmp_path):
    """Full collections must not walk what a worker built to start, nor may startup garbage be
    frozen with it (it would never be freed). In a process of its own: freezing is process-wide."""
    out = subprocess.run([sys.executable, "-c", STARTED_WORKER, str(tmp_path), str(free_port())],
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert int(out[0]) > 10_000 and out[1] == "True", out


# --- the consumer's handover of each message (Consumer.wait_first) -------------------------------

def _unstarted_consumer(tmp_path):  # type: ignore[no-untyped-def]
    """The consumer of a stream app that never starts: wait_first needs no broker."""
    settings = Settings(broker="kafka://127.0.0.1:9", data_dir=tmp_path)
    return StreamApp("handover", settings, web_enabled=False, web_port=free_port()).consumer


async def test_a_handover_that_need_not_wait_runs_in_the_callers_task_and_the_watch_never_starts(tmp_path):
    consumer = _unstarted_consumer(tmp_path)
    ran_in = []

    async def handover(message: int) -> int:
        ran_in.append(asyncio.current_task())
        return message * 2

    watch = asyncio.Event().wait()
    result = await consumer.wait_first(handover(21), watch)
    assert result == WaitResults(result.done, [42], False)
    assert ran_in == [asyncio.current_task()], "no task of its own"
    assert inspect.getcoroutinestate(watch) == inspect.CORO_CLOSED, "closed unstarted: no 'never awaited' warning"


async def test_a_handover_that_must_wait_is_carried_on_to_its_result(tmp_path):
    consumer = _unstarted_consumer(tmp_path)
    gate = asyncio.Event()

    async def handover() -> str:
        await asyncio.sleep(0)  # a bare yield first, then a future
        await gate.wait()
        return "handed over"

    asyncio.get_running_loop().call_later(0.01, gate.set)
    result = await consumer.wait_first(handover(), asyncio.Event().wait())
    assert result.results == ["handed over"] and not result.stopped


async def test_a_suspended_flow_cuts_short_a_stuck_handover_which_is_cancelled(tmp_path):
    consumer = _unstarted_consumer(tmp_path)
    suspend_flow, stuck_until = asyncio.Event(), asyncio.Event()
    cleaned_up = asyncio.Event()

    async def handover() -> None:
        try:
            await stuck_until.wait()
        finally:
            cleaned_up.set()

    asyncio.get_running_loop().call_later(0.01, suspend_flow.set)
    result = await consumer.wait_first(handover(), suspend_flow.wait())
    assert result.results == [True] and not result.stopped, "the suspension won"
    await asyncio.wait_for(cleaned_up.wait(), 1.0)


async def test_a_failing_handover_raises_whether_it_fails_at_once_or_after_waiting(tmp_path):
    consumer = _unstarted_consumer(tmp_path)

    async def handover(wait_first: bool) -> None:
        if wait_first:
            await asyncio.sleep(0.001)
        raise ValueError("undecodable")

    for waits in (False, True):
        watch = asyncio.Event().wait()
        with pytest.raises(ValueError, match="undecodable"):
            await consumer.wait_first(handover(waits), watch)
        await asyncio.sleep(0)
        assert inspect.getcoroutinestate(watch) == inspect.CORO_CLOSED


async def test_cancelling_the_drain_reaches_a_carried_on_handover(tmp_path):
    consumer = _unstarted_consumer(tmp_path)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def handover() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    drain = asyncio.ensure_future(consumer.wait_first(handover(), asyncio.Event().wait()))
    await started.wait()
    drain.cancel()
    with pytest.raises(asyncio.CancelledError):
        await drain
    await asyncio.wait_for(cancelled.wait(), 1.0)


async def test_other_calls_of_wait_first_are_modes_own(tmp_path):
    consumer = _unstarted_consumer(tmp_path)
    ran_in = []

    async def one() -> str:
        ran_in.append(asyncio.current_task())
        return "one"

    assert (await consumer.wait_first(one())).results == ["one"]
    assert (await consumer.wait_first(one(), asyncio.Event().wait(), timeout=1.0)).results[0] == "one"
    assert asyncio.current_task() not in ran_in, "a task of its own, as mode runs it"
