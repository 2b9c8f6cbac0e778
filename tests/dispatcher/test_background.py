"""A background run that fails is counted and logged and never escapes, so the timer runs again."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY
from redis.exceptions import ReadOnlyError

from dispatcher.background import survives


def failures(task: str) -> float:
    return REGISTRY.get_sample_value("dispatcher_background_failures_total", {"task": task}) or 0.0


async def test_a_failing_run_is_counted_logged_and_the_next_run_happens(caplog):
    runs = []

    @survives("flaky_timer")
    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("the first run breaks")

    with caplog.at_level(logging.ERROR, logger="dispatcher.background"):
        await flaky()
        await flaky()
    assert runs == [0, 1]
    assert failures("flaky_timer") == 1
    assert "flaky_timer failed; trying again on the next run" in caplog.text and "the first run breaks" in caplog.text


async def test_redis_refusing_writes_is_counted_as_such():
    @survives("writing_timer")
    async def writes() -> None:
        raise ReadOnlyError("You can't write against a read only replica.")

    await writes()
    assert failures("writing_timer") == 1
    assert REGISTRY.get_sample_value("dispatcher_redis_unavailable_total", {"operation": "writing_timer"}) == 1


async def test_cancelling_a_run_still_cancels_it():
    @survives("stopping_timer")
    async def waits() -> None:
        await asyncio.sleep(10)

    task = asyncio.ensure_future(waits())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert failures("stopping_timer") == 0
