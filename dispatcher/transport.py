"""A faust transport whose consumer waits `consumer_fetch_max_wait_ms` for a fetch, not faust's
hard-coded 1,500 ms. Some brokers (the embedded Tansu among them) answer a fetch only when that
wait is over even with data waiting, so this wait is the latency floor of every lead (NOTES.md)."""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka


class FetchWaitConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this attribute when start() builds its fetcher, which has not happened yet.
        consumer._fetch_max_wait_ms = self.app.settings.consumer_fetch_max_wait_ms
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> FetchWaitConsumerThread:
        return FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
