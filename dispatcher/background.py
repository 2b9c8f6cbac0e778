"""Background work that must outlive its own failures: a timer's run that fails is counted and
logged, and the timer runs again next time. A background error must never take the worker down."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable

from dispatcher import metrics
from dispatcher.state.layout import is_unavailable

log = logging.getLogger(__name__)


def survives(task: str) -> Callable[[Callable[[], Awaitable[None]]], Callable[[], Awaitable[None]]]:
    """Wraps one run of the background task named `task` (module docstring)."""

    def wrap(run: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        @functools.wraps(run)
        async def guarded() -> None:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the module docstring says why
                metrics.background_failures_total.labels(task).inc()
                if is_unavailable(exc):
                    metrics.redis_unavailable_total.labels(task).inc()
                    log.warning("%s: redis unavailable (%s); trying again on the next run", task, exc)
                else:
                    log.exception("%s failed; trying again on the next run", task)

        return guarded

    return wrap
