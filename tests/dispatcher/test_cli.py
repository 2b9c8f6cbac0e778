"""The `dispatcher` command as users run it: real processes, real output, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dispatcher.embedded import free_port

DISPATCHER = [sys.executable, "-m", "dispatcher"]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DISPATCHER, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def children_of(pid: int) -> set[int]:
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.add(int(status.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def read_line_containing(process: subprocess.Popen[str], text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if text in line:
            return line.strip()
        if not line and process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before printing {text!r}")
    raise AssertionError(f"no line with {text!r} within {timeout} s")


def stop_and_check_children(process: subprocess.Popen[str], sig: int) -> None:
    children = children_of(process.pid)
    assert children, "the command started child processes"
    process.send_signal(sig)
    assert process.wait(30) == 0
    deadline = time.monotonic() + 10
    while any(alive(child) for child in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(child) for child in children), "every child it started is gone"


def open_leads(load: int | dict[str, int]) -> int:
    return sum(load.values()) if isinstance(load, dict) else load


def test_routing_check_accepts_a_good_file_and_names_what_is_wrong_in_a_bad_one(tmp_path):
    good = run("routing", "check", "routing/routing.yaml")
    assert good.returncode == 0 and "4 queues" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("queues: {vip: {strategy: fastest}}\nrules: [{queue: nowhere}]\n")
    refused = run("routing", "check", str(bad))
    assert refused.returncode != 0 and "unknown strategy 'fastest'" in refused.stderr


def test_worker_refuses_to_start_open_without_saying_so():
    result = run("worker", env={"DISPATCHER_API_TOKENS": "", "DISPATCHER_ALLOW_ANONYMOUS": "0"})
    assert result.returncode != 0 and "DISPATCHER_ALLOW_ANONYMOUS=1" in result.stderr


def test_worker_refuses_a_bad_routing_file(tmp_path):
    bad = tmp_path / "routing.yaml"
    bad.write_text("queues: [not, a, mapping]\n")
    result = run("worker", env={"DISPATCHER_ALLOW_ANONYMOUS": "1", "DISPATCHER_ROUTING": str(bad)})
    assert result.returncode != 0 and "queues" in result.stderr


def test_services_prints_its_urls_and_ctrl_c_stops_everything():
    process = subprocess.Popen([*DISPATCHER, "services"], stdout=subprocess.PIPE, text=True)
    try:
        line = read_line_containing(process, "broker=", timeout=30)
        assert line.startswith("broker=kafka://127.0.0.1:") and " redis=redis://127.0.0.1:" in line
        stop_and_check_children(process, signal.SIGINT)
    finally:
        process.kill()


def test_dev_prints_ready_serves_the_demo_floor_and_stops_on_sigterm():
    port = free_port()
    process = subprocess.Popen([*DISPATCHER, "dev", "--http-port", str(port)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "DISPATCHER_API_TOKENS": ""})
    try:
        assert read_line_containing(process, "ready", timeout=90) == f"dispatcher ready on http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        reps, assigned = [], False
        while time.monotonic() < deadline and not (reps and assigned):
            reps = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/reps"))["reps"]
            assigned = any(open_leads(rep["load"]) > 0 for rep in reps)
            time.sleep(0.5)
        assert len(reps) >= 20 and assigned, "the demo roster is in and leads are being assigned"
        stop_and_check_children(process, signal.SIGTERM)
    finally:
        process.kill()
