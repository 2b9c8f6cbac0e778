"""Outbound webhooks: every notification (dispatcher/notify.py: an assignment or a move that gives
a rep a lead) POSTed as JSON to DISPATCHER_WEBHOOK_URL, signed, by one worker of all.

The relay reads the notifications stream as the consumer group "webhooks" (dispatcher/outbox.py
gives the shape: each entry taken by one worker, taken over by another if that one dies), so each
event is posted once across workers and survives restarts. A failed POST (a 5xx, 408 or 429, a
timeout, a refused connection) is tried again after a wait that doubles each time; after
DISPATCHER_WEBHOOK_ATTEMPTS tries, or on any other 4xx, the event is given up: counted, logged, and
kept in the dead-letter list (keys.py webhook_dead_letters). The relay runs beside the routing and
never in its way: nothing a decision does waits for it.

Headers: `X-Dispatcher-Signature: sha256=<hex HMAC-SHA256 of the raw body with
DISPATCHER_WEBHOOK_SECRET>`, `X-Dispatcher-Event-Id: <the notification's id>` (the same on a
resend: receivers drop the copies by it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis

from dispatcher import metrics
from dispatcher.outbox import Entry, OutboxRelay, event_of

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Dispatcher-Signature"
EVENT_ID_HEADER = "X-Dispatcher-Event-Id"
DEAD_LETTERS_KEPT = 1000
# Deliveries of one batch in flight at once: one slow receiver answer does not hold up the others.
CONCURRENT_POSTS = 16
RETRIED_STATUSES = frozenset({408, 429})

for result in ("delivered", "retried", "dead", "relay_error"):
    metrics.webhook_deliveries_total.labels(result)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class GiveUp(Exception):
    """The receiver refused the event for good (a 4xx other than 408 and 429)."""


class WebhookRelay(OutboxRelay):
    GROUP = "webhooks"
    # The first worker with webhooks posts what is decided from then on, not the stream's past.
    START = "$"

    def __init__(self, client: aioredis.Redis, stream: str, dead_letters: str, consumer: str, url: str, secret: str,
                 *, attempts: int, backoff_s: float, timeout_s: float, batch: int = 100, block_ms: int = 1000) -> None:
        # A worker retrying an event holds it for up to every wait and timeout: only past that may
        # another worker take it over, or the receiver would get it twice.
        retrying_s = sum(backoff_s * 2**n for n in range(attempts - 1)) + attempts * timeout_s
        super().__init__(client, stream, consumer, None, None, batch=batch, block_ms=block_ms,
                         claim_idle_ms=int((retrying_s + 10) * 1000))
        self.dead_letters, self.url, self.secret = dead_letters, url, secret
        self.attempts, self.backoff_s = attempts, backoff_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def count_failure(self, kind: str) -> None:
        metrics.webhook_deliveries_total.labels("relay_error").inc()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def deliver(self, entries: list[Entry]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        limit = asyncio.Semaphore(CONCURRENT_POSTS)

        async def one(entry_id: str, fields: dict[str, str]) -> None:
            async with limit:
                await self._post(entry_id, event_of(entry_id, fields))

        await asyncio.gather(*(one(entry_id, fields) for entry_id, fields in entries))

    async def acknowledge(self, entries: list[Entry]) -> None:
        # Acknowledged only: the stream is trimmed by length, and SSE readers read it too.
        await self.client.xack(self.stream, self.GROUP, *(entry_id for entry_id, _ in entries))

    async def _post(self, entry_id: str, event: dict[str, Any]) -> None:
        body = orjson.dumps(event)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(self.secret, body),
                   EVENT_ID_HEADER: entry_id}
        error, started = "", time.monotonic()
        for attempt in range(1, self.attempts + 1):
            try:
                assert self._session is not None
                async with self._session.post(self.url, data=body, headers=headers) as response:
                    if response.status < 300:
                        metrics.webhook_deliveries_total.labels("delivered").inc()
                        metrics.webhook_delivery_seconds.observe(time.monotonic() - started)
                        return
                    error = f"HTTP {response.status}"
                    if response.status < 500 and response.status not in RETRIED_STATUSES:
                        raise GiveUp(error)
            except GiveUp:
                break
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt < self.attempts:
                metrics.webhook_deliveries_total.labels("retried").inc()
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        await self._give_up(entry_id, event, error, attempt)

    async def _give_up(self, entry_id: str, event: dict[str, Any], error: str, attempts: int) -> None:
        metrics.webhook_deliveries_total.labels("dead").inc()
        log.error("webhook event %s given up after %d tries (%s); kept in %s", entry_id, attempts, error,
                  self.dead_letters)
        letter = orjson.dumps({"event": event, "url": self.url, "error": error, "attempts": attempts,
                               "at": int(time.time() * 1000)})
        pipe = self.client.pipeline(transaction=False)
        pipe.lpush(self.dead_letters, letter).ltrim(self.dead_letters, 0, DEAD_LETTERS_KEPT - 1)
        await pipe.execute()
