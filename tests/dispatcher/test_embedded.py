"""The embedded stack starts real services on loopback and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import redis

from dispatcher.embedded import EmbeddedStack
from tests.kafka_io import produce, read_topic


def pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


async def test_both_services_answer(stack):
    assert redis.Redis.from_url(stack.redis_url).ping()
    await produce(stack.broker_url, "embedded-roundtrip", [("k", b'{"hello": 1}')])
    records = await read_topic(stack.broker_url, "embedded-roundtrip", until=lambda r: len(r) == 1)
    assert records == [{"hello": 1}]


def test_stop_ends_both_children(tmp_path):
    stack = EmbeddedStack(tmp_path)
    stack.start()
    children = [stack._redis.pid, stack._broker.pid]
    stack.stop()
    stack.stop()
    assert not any(pid_alive(pid) for pid in children)


def test_children_die_when_their_parent_is_killed(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from pathlib import Path
            from dispatcher.embedded import EmbeddedStack
            stack = EmbeddedStack(Path({str(tmp_path)!r}))
            stack.start()
            print(stack._redis.pid, stack._broker.pid, flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True, cwd=os.getcwd(),
    )
    children = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(children) == 2 and all(pid_alive(pid) for pid in children)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(pid) for pid in children)
