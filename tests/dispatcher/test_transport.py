"""The consumer's fetch wait is the setting, not faust's hard-coded 1,500 ms (NOTES.md: on the
embedded broker that wait is every lead's latency floor)."""

from __future__ import annotations

from dispatcher.app import DispatcherApp
from dispatcher.settings import Settings
from dispatcher.transport import FetchWaitConsumerThread


async def test_the_worker_consumer_waits_as_long_as_the_setting_says(stack):
    app = DispatcherApp(Settings(broker=stack.broker_url, consumer_fetch_max_wait_ms=7, topic_prefix="transport."))
    consumer_thread = app.consumer._thread
    assert isinstance(consumer_thread, FetchWaitConsumerThread)
    aiokafka_consumer = consumer_thread._create_worker_consumer(app.transport)
    assert aiokafka_consumer._fetch_max_wait_ms == 7
