"""Every PromQL expression the dashboard and the alert rules use, evaluated by a real Prometheus
that scraped a real worker under traffic (the demo floor, bad input included)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from dispatcher.demo import DemoPlan, run_demo
from dispatcher.embedded import _die_with_parent, free_port
from tests.dispatcher.conftest import Api, assigned
from tests.kafka_io import eventually, produce

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"


def _dashboard() -> dict:
    return json.loads((DASHBOARDS / "dispatcher.json").read_text())


def dashboard_expressions() -> list[str]:
    dashboard = _dashboard()
    # Grafana fills a dashboard variable in; here every team stands for it.
    panels = [target["expr"].replace('"$team"', '".+"') for panel in dashboard["panels"] for target in panel["targets"]]
    # A variable's choices come from a metric's label values: that metric must have data too.
    variables = [re.fullmatch(r"label_values\((\w+), *\w+\)", variable["definition"]).group(1)
                 for variable in dashboard.get("templating", {}).get("list", [])]
    return panels + variables


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load((DASHBOARDS / "alerts.yml").read_text())["groups"] for rule in group["rules"]]


def query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    answer = json.load(urllib.request.urlopen(url, timeout=10))
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


@pytest.fixture
def prometheus(tmp_path, worker_factory):
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: `make install` installs Debian's prometheus package"
    worker = worker_factory()
    port = free_port()
    config = yaml.safe_load((DASHBOARDS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{worker.http_port}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(DASHBOARDS / "alerts.yml", tmp_path / "alerts.yml")
    process = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"), preexec_fn=_die_with_parent,
    )
    base = f"http://127.0.0.1:{port}"
    # Prometheus answers queries with 503 until it has opened its storage: a busy machine takes a while.
    deadline = time.monotonic() + 60
    while not _ready(base):
        assert process.poll() is None and time.monotonic() < deadline, "prometheus did not become ready"
        time.sleep(0.1)
    yield worker, base
    process.terminate()
    process.wait(10)


async def test_every_dashboard_and_alert_expression_returns_data(prometheus, stack):
    worker, base = prometheus
    stop = asyncio.Event()
    # Offers, first contacts and pool times of seconds, so offers end every way, leads are pooled and
    # claimed, and first contacts are missed while the test watches.
    plan = DemoPlan(reps=12, leads_per_second=20, burst_every_s=8, burst_length_s=2, mean_handle_time_s=2,
                    accept_timeout_s=1.5, mean_answer_s=0.3, first_contact_s=1.5, pool_after_s=1, claim_every_s=0.3)
    demo = asyncio.create_task(run_demo(f"http://127.0.0.1:{worker.http_port}", plan, stop))
    prefix = worker.env["DISPATCHER_TOPIC_PREFIX"]
    # Counters must be seen at zero first: increase() does not count a series' first sample.
    await eventually(lambda: _scraped(base), timeout_s=30)
    await produce(stack.broker_url, prefix + "leads", [("bad", b"{not json"), ("worse", orjson.dumps({"id": 1}))])
    refused = urllib.request.Request(f"http://127.0.0.1:{worker.http_port}/v1/leads", data=b"{oops", method="POST")
    with pytest.raises(urllib.error.HTTPError):
        await asyncio.to_thread(urllib.request.urlopen, refused)

    # Asked again until every expression has data: rates need two scrapes of a series, and the demo
    # needs some seconds to make an offer run out, a lead pooled and a first contact missed.
    missing = []
    deadline = time.monotonic() + 45
    expressions = dashboard_expressions() + [rule["expr"] for rule in alert_rules()]
    while time.monotonic() < deadline:
        missing = [expr for expr in dashboard_expressions() if not await asyncio.to_thread(query, base, expr)]
        for rule in alert_rules():
            # An alert's expression is empty while all is well; what must exist is every series it reads.
            for metric in set(re.findall(r"\b(dispatcher_\w+|up)\b", rule["expr"])):
                if not await asyncio.to_thread(query, base, metric):
                    missing.append(f"{rule['alert']}: {metric}")
        if not missing:
            break
        await asyncio.sleep(2)
    stop.set()
    await demo
    assert not missing, f"no data for: {missing}"
    for expr in expressions:
        await asyncio.to_thread(query, base, expr)
    states = await eventually(lambda: _states_once_dead_letters_fire(base), timeout_s=30)
    assert states["DispatcherWorkerDown"] == "inactive", states


async def test_a_team_with_open_leads_and_no_capacity_online_shows_no_utilization_not_infinity(prometheus):
    worker, base = prometheus
    async with aiohttp.ClientSession() as session:
        api = Api(session, worker.http_port)
        await api.rep("day-1", capacity=2, teams=["day-shift"], skills={"day": 1})
        await api.rep("night-1", capacity=2, teams=["night-shift"], skills={"night": 1})
        # Online, but with no capacity: the team's capacity online is 0 and so is its online load.
        await api.rep("night-2", capacity=0, teams=["night-shift"])
        for lead_id, skill in (("day-lead", "day"), ("night-lead", "night")):
            code, body = await api.call("POST", "/v1/leads", {"id": lead_id, "skills": [skill]})
            assert code == 202, body
        for lead_id in ("day-lead", "night-lead"):
            await eventually(lambda lead_id=lead_id: assigned(api, lead_id), timeout_s=20)
        # Away reps keep their open leads: night-shift holds one lead and has no capacity online.
        code, body = await api.call("POST", "/v1/reps/night-1/presence", {"status": "away"})
        assert code == 200, body
        code, picture = await api.call("GET", "/v1/live")
    teams = {team["name"]: team for team in picture["teams"]}
    assert teams["day-shift"]["utilization"] == 0.5
    assert teams["night-shift"]["utilization"] is None and teams["night-shift"]["capacity_online"] == 0

    panels = {panel["title"]: panel["targets"][0]["expr"] for panel in _dashboard()["panels"]}
    utilization = next(expr for title, expr in panels.items() if title.startswith("Team utilization"))
    held = panels["Open leads held by reps not online"]
    await eventually(lambda: _by_team(base, held, status="away") == {"day-shift": 0, "night-shift": 1},
                     timeout_s=30, every_s=0.5)
    not_finite = {}
    for expr in dashboard_expressions() + [rule["expr"] for rule in alert_rules()]:
        for series in await asyncio.to_thread(query, base, expr):
            if not math.isfinite(float(series["value"][1])):
                not_finite[expr] = series
    assert not not_finite, f"a panel or alert shows infinity or NaN: {not_finite}"
    assert _by_team(base, utilization) == {"day-shift": 0.5}, "the panel agrees with the live page"


def _by_team(base: str, expr: str, **labels: str) -> dict[str, float]:
    return {series["metric"]["team"]: float(series["value"][1]) for series in query(base, expr)
            if all(series["metric"].get(name) == value for name, value in labels.items())}


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def _scraped(base: str) -> bool:
    try:
        return bool(query(base, 'dispatcher_leads_dlq_total{reason="malformed_json"}'))
    except OSError:
        return False


def _states_once_dead_letters_fire(base: str) -> dict[str, str] | None:
    rules = json.load(urllib.request.urlopen(f"{base}/api/v1/rules"))["data"]["groups"][0]["rules"]
    states = {rule["name"]: rule["state"] for rule in rules}
    return states if states["DeadLettersGrowing"] == "firing" else None
