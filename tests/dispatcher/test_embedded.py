"""The embedded stack starts real services on loopback and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from dispatcher.embedded import EmbeddedStack, WorkerProcess, _ephemeral_port_range, free_port
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


def test_free_ports_come_from_outside_the_ephemeral_range_and_never_twice():
    # Nothing binds these ports in between, so only the remembering keeps a port from coming back.
    low, high = _ephemeral_port_range()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert not [port for port in ports if low <= port <= high]


def test_a_worker_that_cannot_bind_its_port_is_reported_with_its_cause(stack, tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        env = {**stack.worker_env, "DISPATCHER_ALLOW_ANONYMOUS": "1"}
        worker = WorkerProcess(env, squatter.getsockname()[1], tmp_path / "worker.log")
        with pytest.raises(RuntimeError) as failure:
            worker.start()
    report = str(failure.value)
    assert "the worker process exited with code 1" in report
    assert "its first error:" in report and "address already in use" in report.split("its log")[0]
