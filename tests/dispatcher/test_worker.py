"""The worker end to end: real broker, real redis-server, the worker as its own process, driven
over HTTP and Kafka as users drive it. Each test has its own topics and Redis workspace."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import orjson
import pytest
import yaml

from tests.dispatcher.conftest import Api, assigned as _assigned, topic, with_status
from tests.kafka_io import eventually, produce, produce_leads, read_topic


async def test_a_lead_posted_over_http_is_assigned_and_announced(worker_factory, api_factory, stack):
    worker = worker_factory()
    api = await api_factory(worker)
    await api.rep("ana", capacity=2, skills={"spanish": 8})
    await api.rep("bo", capacity=2)
    code, body = await api.call("POST", "/v1/leads", {"id": "web-1", "skills": ["spanish"], "priority": 5})
    assert (code, body) == (202, {"id": "web-1", "status": "accepted", "duplicate": False})
    lead = await eventually(lambda: _assigned(api, "web-1"))
    assert lead["rep_id"] == "ana" and lead["strategy"] == "load_aware" and "load-aware" in lead["reason"]
    assert [entry["event"] for entry in lead["history"]] == ["accepted", "assigned"]
    events = await read_topic(stack.broker_url, topic(worker, "assignments"), until=lambda r: len(r) >= 1)
    assert events[0]["lead_id"] == "web-1" and events[0]["rep_id"] == "ana" and events[0]["reassigned"] is False
    code, rep = await api.call("GET", "/v1/reps/ana")
    assert rep["load"] == 1 and rep["status"] == "online"
    assert await api.call("GET", "/v1/reps/ana/leads") == (200, {"rep_id": "ana", "leads": ["web-1"]})
    assert (await api.call("GET", "/v1/reps/nobody/leads"))[0] == 404


async def test_close_frees_capacity_at_once_and_drains_the_queue(worker_factory, api_factory):
    worker = worker_factory()
    api = await api_factory(worker)
    await api.rep("solo", capacity=1)
    for lead_id, priority in (("first", 0), ("low", 1), ("urgent", 9)):
        assert (await api.call("POST", "/v1/leads", {"id": lead_id, "priority": priority}))[0] == 202
        await eventually(lambda lead_id=lead_id: _decided(api, lead_id))
    code, closed = await api.call("POST", "/v1/leads/first/close", {"outcome": "won"})
    assert code == 200 and closed["status"] == "closed" and closed["outcome"] == "won"
    assert (await api.lead_status("urgent"))["status"] == "assigned", "the drain ran inside the close"
    assert (await api.lead_status("low"))["status"] == "queued"
    async with api.session.get(api.base + "/metrics") as response:
        exported = await response.text()
    assert "dispatcher_waited_before_assignment_seconds_count 1.0" in exported, "the drained lead's wait is measured"


async def test_a_supervisor_moves_a_lead_and_it_is_announced_and_counted(worker_factory, api_factory, stack):
    worker = worker_factory()
    api = await api_factory(worker)
    await api.rep("ana", capacity=1)
    assert (await api.call("POST", "/v1/leads", {"id": "moved"}))[0] == 202
    await eventually(lambda: _assigned(api, "moved"))
    # The decision is announced by the worker just after it is made, the move through the outbox:
    # a move within those milliseconds could be heard first (consumers order a lead's events by
    # assigned_at), and this test is about the move being announced, not about that race.
    await read_topic(stack.broker_url, topic(worker, "assignments"), until=lambda r: len(r) >= 1)
    await api.rep("bo", capacity=1)
    code, body = await api.call("POST", "/v1/leads/moved/reassign", {"rep_id": "bo"})
    assert code == 200, body
    assert (await api.lead_status("moved"))["rep_id"] == "bo"
    events = await read_topic(stack.broker_url, topic(worker, "assignments"), until=lambda r: len(r) >= 2)
    assert [(e["rep_id"], e["reassigned"]) for e in events] == [("ana", False), ("bo", True)]
    async with api.session.get(api.base + "/metrics") as response:
        exported = (await response.text()).splitlines()
    moved = [line for line in exported if line.startswith("dispatcher_leads_reassigned_total{")]
    assert len(moved) == 1 and moved[0].endswith(" 1.0"), moved


async def _decided(api: Api, lead_id: str) -> bool:
    lead = await api.lead_status(lead_id)
    return bool(lead) and lead["status"] in ("assigned", "queued")


BAD_LEADS = [
    (b"{not json", 400, "malformed JSON"),
    (b'{"id": "x", "priority": "high"}', 400, "priority"),
    (b'{"id": "x", "priority": 10}', 400, "priority"),
    (b'{"id": "bad id!"}', 400, "id"),
    (b'{"priority": 1}', 400, "id"),
    (b'{"id": "x", "priorty": 1}', 400, "priorty"),
    (b'{"id": "x", "channel": "fax"}', 400, "not routed"),
    (b'{"id": "x", "attributes": {"a": {"b": 1}}}', 400, "attributes"),
    (b'[]', 400, "object"),
    (b'{"id": "x", "attributes": {"blob": "' + b"a" * 200_000 + b'"}}', 413, "limit"),
]


@pytest.mark.parametrize(("raw", "status", "words"), BAD_LEADS)
async def test_bad_leads_over_http_are_refused_in_words_and_change_nothing(worker, api, raw, status, words):
    code, body = await api.call("POST", "/v1/leads", raw=raw)
    assert code == status and words in body["error"], body
    assert await api.lead_status("x") is None


@pytest.fixture(scope="module")
def worker(worker_factory_module):
    return worker_factory_module()


@pytest.fixture
async def api(worker):
    async with aiohttp.ClientSession() as session:
        yield Api(session, worker.http_port)


async def rejected_count(api, endpoint: str, status: str) -> float:
    async with api.session.get(api.base + "/metrics") as response:
        exported = (await response.read()).decode()
    found = re.search(rf'^dispatcher_http_rejected_total{{endpoint="{endpoint}",status="{status}"}} (\S+)$', exported, re.M)
    return float(found.group(1)) if found else 0.0


async def test_bad_rep_and_presence_input_is_refused(worker, api):
    cases = [
        ("PUT", "/v1/reps/r1", {"capacity": -1}, 400, "capacity"),
        ("PUT", "/v1/reps/r1", {"capacity": {"fax": 1}}, 400, "not routed"),
        ("PUT", "/v1/reps/r1", {"skills": {"x": 1}}, 400, "capacity"),
        ("PUT", "/v1/reps/r1", {"capacity": 1, "skills": {"x": 11}}, 400, "skills"),
        ("PUT", "/v1/reps/r1", {"capacity": 1, "attributes": {"rank": "top"}}, 400, "rank"),
        ("PUT", "/v1/reps/r1", {"capacity": 1, "attributes": {"weight": 0}}, 400, "attributes.weight must be a number"),
        ("PUT", "/v1/reps/bad%20id", {"capacity": 1}, 400, "rep id"),
        ("POST", "/v1/reps/nobody/presence", {"status": "online"}, 404, "unknown rep"),
        ("POST", "/v1/reps/r1/presence", {"status": "busy"}, 400, "status"),
        ("GET", "/v1/reps/nobody", None, 404, "unknown rep"),
        ("GET", "/v1/leads/nothing", None, 404, "unknown lead"),
        ("POST", "/v1/leads/nothing/close", {"outcome": "won"}, 404, "unknown lead"),
        ("POST", "/v1/leads/nothing/close", {}, 400, "outcome"),
        ("POST", "/v1/leads/nothing/reassign", {"rep_id": 5}, 400, "rep_id"),
        ("DELETE", "/v1/leads", None, 405, "not allowed"),
        ("GET", "/v1/nowhere", None, 404, "no such endpoint"),
    ]
    unrouted_before = {status: await rejected_count(api, "unrouted", status) for status in ("404", "405")}
    for method, path, body, status, words in cases:
        code, answer = await api.call(method, path, body)
        assert code == status and words in answer["error"], (method, path, answer)
    code, reps = await api.call("GET", "/v1/reps")
    assert reps == {"reps": []}, "no refused call created anything"
    after = {status: await rejected_count(api, "unrouted", status) for status in ("404", "405")}
    assert after == {status: count + 1 for status, count in unrouted_before.items()}, "refused before any endpoint, still counted"


async def test_bad_records_on_the_topic_go_to_the_dead_letter_topic(worker_factory, api_factory, stack):
    worker = worker_factory()
    api = await api_factory(worker)
    await api.rep("r", capacity=5)
    await produce(stack.broker_url, topic(worker, "leads"), [
        ("a", b"{oops"),
        ("b", orjson.dumps({"id": "b", "priority": "urgent"})),
        ("c", orjson.dumps({"id": "c", "channel": "pigeon"})),
        ("good", orjson.dumps({"id": "good"})),
    ])
    await eventually(lambda: _assigned(api, "good"))
    dead = await read_topic(stack.broker_url, topic(worker, "leads-dlq"), until=lambda r: len(r) >= 3)
    assert sorted(record["kind"] for record in dead) == ["invalid", "malformed_json", "unrouted_channel"]
    assert all(record["error"] and record["value"] and record["source"] for record in dead)


async def test_tokens_guard_everything_but_health_and_metrics(worker_factory, api_factory):
    worker = worker_factory(DISPATCHER_API_TOKENS="s3cret,other", DISPATCHER_ALLOW_ANONYMOUS="0")
    api = await api_factory(worker)
    assert (await api.call("GET", "/v1/reps"))[0] == 401
    assert (await api.call("GET", "/v1/reps", headers={"Authorization": "Bearer wrong"}))[0] == 401
    assert (await api.call("GET", "/v1/reps", headers={"Authorization": "Bearer other"}))[0] == 200
    assert (await api.call("GET", "/v1/health"))[0] == 200
    async with api.session.get(api.base + "/metrics") as response:
        assert response.status == 200 and b"dispatcher_leads_received_total" in await response.read()
    assert await rejected_count(api, "auth", "401") == 2


async def test_the_routing_file_changes_without_a_restart_and_a_bad_edit_is_refused(worker_factory, api_factory, tmp_path):
    routing = tmp_path / "routing.yaml"
    routing.write_text("queues: {everyone: {}}\n")
    worker = worker_factory(DISPATCHER_ROUTING=str(routing), DISPATCHER_ROUTING_POLL_S="0.2")
    api = await api_factory(worker)
    await api.rep("vip-rep", capacity=3, teams=["vip"])
    await api.rep("other", capacity=3)
    assert (await api.call("GET", "/v1/reps/other"))[1]["queues"] == ["everyone"]

    routing.write_text(
        "queues: {vip: {strategy: priority, members: {teams: [vip]}}, everyone: {}}\n"
        "rules: [{when: {priority_gte: 8}, queue: vip}]\ndefault_queue: everyone\n"
    )
    await eventually(lambda: _queues_of(api, "vip-rep", ["vip", "everyone"]))
    assert (await api.call("POST", "/v1/leads", {"id": "urgent", "priority": 9}))[0] == 202
    urgent = await eventually(lambda: _assigned(api, "urgent"))
    assert (urgent["rep_id"], urgent["queue"], urgent["strategy"]) == ("vip-rep", "vip", "priority")

    routing.write_text("queues: {vip: {strategy: nonsense}}\n")
    await asyncio.sleep(1.0)
    assert (await api.call("POST", "/v1/leads", {"id": "urgent-2", "priority": 9}))[0] == 202
    second = await eventually(lambda: _assigned(api, "urgent-2"))
    assert second["queue"] == "vip", "the refused edit left the routing in force"
    assert "routing file refused" in worker.log_tail(200)


async def _queues_of(api: Api, rep_id: str, expected: list[str]) -> bool:
    return (await api.call("GET", f"/v1/reps/{rep_id}"))[1]["queues"] == expected


async def test_a_resent_id_is_assigned_once_over_http_and_kafka(worker_factory, api_factory, stack):
    worker = worker_factory()
    api = await api_factory(worker)
    await api.rep("r", capacity=10)
    assert (await api.call("POST", "/v1/leads", {"id": "twice"}))[1]["duplicate"] is False
    await eventually(lambda: _assigned(api, "twice"))
    assert (await api.call("POST", "/v1/leads", {"id": "twice", "priority": 9}))[1]["duplicate"] is True
    await produce_leads(stack.broker_url, topic(worker, "leads"), [{"id": "twice"}, {"id": "marker"}])
    await eventually(lambda: _assigned(api, "marker"))
    events = await read_topic(stack.broker_url, topic(worker, "assignments"),
                              until=lambda r: any(e["lead_id"] == "marker" for e in r))
    assert [e["lead_id"] for e in events].count("twice") == 1
    assert (await api.call("GET", "/v1/reps/r"))[1]["load"] == 2


async def test_the_routing_is_put_checked_and_applied_live_and_a_bad_one_changes_nothing(worker_factory, api_factory):
    worker = worker_factory()
    api = await api_factory(worker)
    await api.rep("ana", capacity=2, skills={"spanish": 5})
    await api.rep("bo", capacity=2)
    code, before = await api.call("GET", "/v1/routing")
    assert code == 200 and before["version"] == "1" and before["source"] == "built-in default"
    bad_routings = (
        (b"queues: {vip: {strategy: fastest}}\nrules: [{queue: nowhere}]\n", "unknown strategy"),
        (b"# all commented out\n", "empty or holds only comments"),
        (b"queues: [unclosed", "not valid YAML or JSON"),
        (b"[" * 20_000, "nested too deeply"),
        (b"queues: {a: {overflow: {after_s: 5, to: b}}, b: {overflow: {after_s: 5, to: a}}}\n", "overflow in a circle"),
        (b"queues: {a: {overflow: {after_s: 5, to: elsewhere}}}\n", "overflows to queue 'elsewhere', which is not defined"),
        (b"queues: {a: {overflow: {after_s: 0, to: a}}}\n", "greater than 0"),
        (b"queues: {a: {sticky: {field: 'customer id', wait_s: 5}}}\n", "sticky.field"),
        (b"queues: {a: {sticky: {wait_s: -1}}}\n", "sticky.wait_s"),
        (b"queues: {a: {strategy: weighted, options: {speed: 2}}}\n", "strategy weighted has no option 'speed'"),
        (b"queues: {a: {strategy: performance, options: {window_days: 400}}}\n", "option window_days is 400"),
        (b"queues: {a: {strategy: skills, options: {max_compared: 2.5}}}\n", "must be a whole number"),
        (b"rules: [{name: '', queue: default}]\n", "rule 1, name"),
    )
    # Leads keep being routed by the routing in force while every kind of bad routing is refused.
    async def post_leads() -> None:
        for n in range(len(bad_routings)):
            assert (await api.call("POST", "/v1/leads", {"id": f"meanwhile-{n}"}))[0] == 202
            await asyncio.sleep(0.01)

    async def put_bad_routings() -> None:
        for raw, words in bad_routings:
            code, body = await api.call("PUT", "/v1/routing", raw=raw)
            assert code == 422 and words in body["error"], (raw[:40], body)

    await asyncio.gather(post_leads(), put_bad_routings())
    for n in range(len(bad_routings)):
        decided = await eventually(lambda n=n: _assigned(api, f"meanwhile-{n}"))
        assert decided["queue"] == "default"
        await api.call("POST", f"/v1/leads/meanwhile-{n}/close", {"outcome": "won"})
    code, body = await api.call("PUT", "/v1/routing", raw=b"queues: {vip: {strategy: fastest}}\nrules: [{queue: nowhere}]\n")
    assert len(body["reasons"]) == 2, "every problem at once"
    assert (await api.call("GET", "/v1/routing"))[1]["version"] == "1", "nothing changed"

    text = ("# Spanish speakers first\nqueues: {spanish: {members: {skills: {spanish: 1}}}, general: {}}\n"
            "rules: [{when: {attributes: {language: es}}, queue: spanish}]\ndefault_queue: general\n")
    code, body = await api.call("PUT", "/v1/routing", raw=text.encode())
    assert code == 200 and (body["version"], body["applied"], body["text"], body["by"]) == ("2", True, text, "anonymous")
    assert (await api.call("POST", "/v1/leads", {"id": "es", "attributes": {"language": "es"}}))[0] == 202
    lead = await eventually(lambda: _assigned(api, "es"))
    assert (lead["rep_id"], lead["queue"]) == ("ana", "spanish")
    code, again = await api.call("PUT", "/v1/routing", raw=orjson.dumps(yaml.safe_load(text)),
                                 headers={"Content-Type": "application/json"})
    assert code == 200 and (again["version"], again["applied"]) == ("2", False), "JSON is taken; the same routing is a no-op"

    assert (await api.call("POST", "/v1/leads", {"id": "klingon-1", "skills": ["klingon"]}))[0] == 202
    await eventually(lambda: with_status(api, "klingon-1", "queued"))
    code, body = await api.call("PUT", "/v1/routing", raw=b"channels: [chat]\n")
    assert code == 409 and body["reasons"] == [
        "lead klingon-1 waits on channel web, which this routing drops; close it first, or keep the channel"]
    code, history = await api.call("GET", "/v1/routing/history")
    assert [entry["version"] for entry in history["versions"]] == ["2", "1"]
