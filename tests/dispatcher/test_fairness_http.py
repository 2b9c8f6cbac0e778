"""GET /v1/stats/fairness and the fairness gauges on a real worker: the figures per queue over a
window, bad windows refused in words, and the gauges and the live picture sampled on a timer."""

from __future__ import annotations

import re

import pytest

from dispatcher.fairness import gini
from tests.dispatcher.conftest import assigned
from tests.kafka_io import eventually

ROUTING = """
queues:
  sales: {strategy: load_aware, members: {teams: [sales]}}
  experts: {strategy: skills, members: {teams: [experts]}}
rules:
  - {when: {skills: [spanish]}, queue: experts}
default_queue: sales
"""


@pytest.fixture(scope="module")
def worker(worker_factory_module, tmp_path_factory):
    routing = tmp_path_factory.mktemp("fairness") / "routing.yaml"
    routing.write_text(ROUTING)
    return worker_factory_module(DISPATCHER_ROUTING=str(routing), DISPATCHER_FAIRNESS_RETENTION_S="7200",
                                 DISPATCHER_FAIRNESS_WINDOW_S="600", DISPATCHER_FAIRNESS_SAMPLE_S="0.5")


async def fairness_once_sampled(api):
    """The live picture once the fairness timer has sampled every assignment: three in sales and the
    one in experts (a sample taken between the last sale and the Spanish lead has only the sales)."""
    code, picture = await api.call("GET", "/v1/live")
    counts = {queue["queue"]: queue["assignments"] for queue in picture.get("fairness", [])} if code == 200 else {}
    return picture if counts == {"sales": 3, "experts": 1} else None


async def test_assignments_per_rep_spread_and_gini_per_queue(worker, api_factory):
    api = await api_factory(worker)
    await api.rep("ana", capacity=1, teams=["sales"])
    await api.rep("bo", capacity=5, teams=["sales"])
    await api.rep("cy", capacity=5, teams=["sales"], status="offline")
    await api.rep("eva", capacity=5, teams=["experts"], skills={"spanish": 9})
    for n in range(3):
        assert (await api.call("POST", "/v1/leads", {"id": f"sale-{n}"}))[0] == 202
        await eventually(lambda n=n: assigned(api, f"sale-{n}"))
    assert (await api.call("POST", "/v1/leads", {"id": "habla", "skills": ["spanish"]}))[0] == 202
    lead = await eventually(lambda: assigned(api, "habla"))
    assert lead["rep_id"] == "eva" and "skills: best score 9 of 10 (spanish 9)" in lead["reason"]

    code, body = await api.call("GET", "/v1/stats/fairness?window_s=3600")
    assert code == 200, body
    sales, experts = body["queues"]
    assert sales == {"queue": "sales", "strategy": "load_aware", "window_s": 3600, "assignments": 3,
                     "reps": {"ana": 1, "bo": 2, "cy": 0}, "spread": 2, "gini": round(gini([1, 2, 0]), 4)}
    assert experts["reps"] == {"eva": 1} and experts["strategy"] == "skills" and experts["gini"] == 0.0
    code, default = await api.call("GET", "/v1/stats/fairness")
    assert code == 200 and default["queues"][0]["window_s"] == 600, "DISPATCHER_FAIRNESS_WINDOW_S by default"

    picture = await eventually(lambda: fairness_once_sampled(api))
    assert picture["fairness"][0]["reps"] == {"ana": 1, "bo": 2, "cy": 0}
    async with api.session.get(api.base + "/metrics") as response:
        exported = await response.text()
    gini_line = re.search(r'^dispatcher_fairness_gini_ratio\{queue="sales"\} (\S+)$', exported, re.M)
    assert gini_line and float(gini_line.group(1)) == pytest.approx(gini([1, 2, 0]), abs=1e-4)
    assert 'dispatcher_fairness_spread_leads{queue="sales"} 2.0' in exported
    assert 'dispatcher_fairness_window_leads{queue="experts"} 1.0' in exported


@pytest.mark.parametrize(("query", "words"), [
    ("window_s=0", "window_s must be a whole number of seconds above 0, not '0'"),
    ("window_s=-60", "not '-60'"),
    ("window_s=1.5", "not '1.5'"),
    ("window_s=", "not ''"),
    ("window_s=hour", "not 'hour'"),
    ("window_s=7201", "window_s 7201 reaches past what the assignment log keeps: at most 7200"),
    ("window_s=" + "9" * 5000, "reaches past what the assignment log keeps"),
])
async def test_a_bad_window_is_a_400_in_words(worker, api_factory, query, words):
    api = await api_factory(worker)
    code, body = await api.call("GET", f"/v1/stats/fairness?{query}")
    assert code == 400 and words in body["error"], body
