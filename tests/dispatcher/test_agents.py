"""The worker's stream processing and background work under hostile input and failure, end to
end on the real broker and redis-server: a bad record never stops a partition, Redis refusing
writes never crashes the worker, a routing change reaches every worker, events of HTTP-side steps
reach Kafka through the outbox."""

from __future__ import annotations

import asyncio
import re

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from dispatcher.embedded import EmbeddedStack, free_port
from tests.dispatcher.conftest import assigned, topic, with_status
from tests.kafka_io import bootstrap, eventually, read_topic


async def produce_with_headers(broker_url: str, name: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(broker_url), linger_ms=1)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(name, value, key=key, headers=[("trace", key + b"-trace")])
        await producer.flush()
    finally:
        await producer.stop()


async def test_one_bad_record_never_stops_its_partition(worker_factory, api_factory, stack):
    """Before: a 71-bit integer passed validation and failed later, inside the batch, and the
    batch was replayed for ever; a dead letter quoting a 700 kB value was too large to produce."""
    worker = worker_factory(DISPATCHER_TOPIC_PARTITIONS="1")
    api = await api_factory(worker)
    await api.rep("r", capacity=5)
    await produce_with_headers(stack.broker_url, topic(worker, "leads"), [
        (b"before", orjson.dumps({"id": "before"})),
        (b"huge-int", b'{"id": "huge-int", "attributes": {"n": 2361183241434822606848}}'),
        (b"huge-value", b'"' * 700_000),
        (b"after", orjson.dumps({"id": "after"})),
    ])
    for lead_id in ("before", "after"):
        await eventually(lambda lead_id=lead_id: assigned(api, lead_id))
    dead = {record["source"]: record for record in await read_topic(
        stack.broker_url, topic(worker, "leads-dlq"), until=lambda r: len(r) >= 2)}
    assert len(dead) == 2
    huge_value = next(record for record in dead.values() if record["kind"] == "too_large")
    assert huge_value["truncated"] and huge_value["value_bytes"] == 700_000 and len(huge_value["value"]) == 16 * 1024
    huge_int = next(record for record in dead.values() if record["kind"] != "too_large")
    assert "64" in huge_int["error"] or "integer" in huge_int["error"]
    assert await api.lead_status("huge-int") is None, "a refused record changes nothing"


async def test_dead_letters_keep_the_records_key_and_headers(worker_factory, stack):
    worker = worker_factory()
    await produce_with_headers(stack.broker_url, topic(worker, "leads"), [(b"their-key", b"{oops")])
    consumer_records = []

    async def read() -> bool:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(topic(worker, "leads-dlq"), bootstrap_servers=bootstrap(stack.broker_url),
                                    auto_offset_reset="earliest", fetch_max_wait_ms=50)
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=1000)
            consumer_records.extend(m for messages in batches.values() for m in messages)
        finally:
            await consumer.stop()
        return bool(consumer_records)

    await eventually(read, timeout_s=30)
    (record,) = consumer_records
    assert record.key == b"their-key" and list(record.headers) == [("trace", b"their-key-trace")]
    assert orjson.loads(record.value)["kind"] == "malformed_json"


async def test_redis_refusing_writes_holds_the_leads_back_and_the_worker_lives(worker_factory, api_factory, stack, tmp_path):
    """READONLY (a replica, as during a failover) and OOM (maxmemory reached): the worker waits,
    counts it, stays up, and decides every lead once Redis takes writes again. (Redis refuses a
    script for OOM only until its first write; the OOM lead asks for a skill nobody has, so its
    first write is the wait set's ZADD, which Redis refuses.)"""
    with EmbeddedStack(tmp_path / "own-redis", with_broker=False) as own:
        worker = worker_factory(DISPATCHER_REDIS_URL=own.redis_url)
        api = await api_factory(worker)
        await api.rep("r", capacity=10)
        admin = aioredis.from_url(own.redis_url)
        cases = [(("replicaof", "127.0.0.1", str(free_port())), ("replicaof", "no", "one"), {}, "assigned"),
                 (("config", "set", "maxmemory", "1"), ("config", "set", "maxmemory", "0"), {"skills": ["klingon"]},
                  "queued")]
        try:
            for refuse, allow, fields, decided in cases:
                lead = {"id": f"held-{refuse[0]}", **fields}
                refusals_before = await _refusals(api)
                await admin.execute_command(*refuse)
                code, body = await api.call("POST", "/v1/leads", lead)
                assert code == 503 and "send it again" in body["error"]
                await produce_with_headers(stack.broker_url, topic(worker, "leads"),
                                           [(lead["id"].encode(), orjson.dumps(lead))])
                await eventually(lambda before=refusals_before: _refusals_above(api, before), timeout_s=20)
                await asyncio.sleep(0.5)
                assert worker.process.poll() is None and await api.lead_status(lead["id"]) is None
                await admin.execute_command(*allow)
                await eventually(lambda lead=lead, decided=decided: with_status(api, lead["id"], decided), timeout_s=30)
        finally:
            await admin.aclose()


async def _refusals_above(api, before: float) -> bool:
    return await _refusals(api) > before


async def _refusals(api) -> float:
    async with api.session.get(api.base + "/metrics") as response:
        text = (await response.read()).decode()
    counted = re.findall(r'^dispatcher_redis_unavailable_total\{operation="decide"\} (\S+)$', text, re.M)
    return float(counted[0]) if counted else 0.0


async def test_a_routing_change_reaches_every_worker_and_strands_no_lead(worker_factory, api_factory, tmp_path):
    routing = tmp_path / "routing.yaml"
    routing.write_text("queues: {spanish: {members: {skills: {spanish: 1}}}, general: {}}\n"
                       "rules: [{when: {attributes: {language: es}}, queue: spanish}]\ndefault_queue: general\n")
    env = {"DISPATCHER_ROUTING": str(routing), "DISPATCHER_ROUTING_POLL_S": "0.2"}
    first, second = worker_factory(**env), worker_factory(**env)
    apis = [await api_factory(first), await api_factory(second)]
    await apis[0].rep("ana", capacity=1)
    assert (await apis[0].call("POST", "/v1/leads", {"id": "needs-spanish", "attributes": {"language": "es"}}))[0] == 202
    waiting = await eventually(lambda: with_status(apis[1], "needs-spanish", "queued"))
    assert waiting["queue"] == "spanish"

    routing.write_text("queues: {general: {}}\n")
    for api in apis:
        await eventually(lambda api=api: _routing_version(api, 2))
    code, in_force = await apis[1].call("GET", "/v1/routing")
    assert code == 200 and (in_force["version"], in_force["text"]) == ("2", "queues: {general: {}}\n")
    code, history = await apis[0].call("GET", "/v1/routing/history")
    assert [entry["version"] for entry in history["versions"]] == ["2", "1"]
    assert all(str(routing) in entry["source"] and entry["by"] for entry in history["versions"])
    rerouted = await eventually(lambda: with_status(apis[1], "needs-spanish", "assigned"))
    assert (rerouted["queue"], rerouted["rep_id"]) == ("general", "ana")
    entry = next(e for e in rerouted["history"] if e["event"] == "rerouted")
    assert entry["from_queue"] == "spanish" and "removed queue spanish" in entry["reason"]

    routing.write_text("# emptied by an editor\n")
    await asyncio.sleep(1.0)
    for api in apis:
        assert await _routing_version(api, 2), "an empty file is refused, not the catch-all"
    assert "is empty or holds only comments" in first.log_tail(200) + second.log_tail(200)


async def test_a_routing_edit_redis_could_not_take_is_applied_once_it_can(worker_factory, api_factory, tmp_path):
    """A poll that read the edited file but failed to apply it (Redis refusing writes here; a
    connection lost, or the routing moving under every attempt) must not count the edit as seen:
    the next poll applies it, with no further edit of the file."""
    routing = tmp_path / "routing.yaml"
    routing.write_text("queues: {general: {}}\n")
    with EmbeddedStack(tmp_path / "own-redis", with_broker=False) as own:
        worker = worker_factory(DISPATCHER_REDIS_URL=own.redis_url, DISPATCHER_ROUTING=str(routing),
                                DISPATCHER_ROUTING_POLL_S="0.2")
        api = await api_factory(worker)
        await eventually(lambda: _routing_version(api, 1))
        admin = aioredis.from_url(own.redis_url)
        try:
            await admin.config_set("maxmemory", 1)
            routing.write_text("queues: {general: {}, vip: {}}\n")
            await eventually(lambda: "reload_routing: redis unavailable" in worker.log_tail(400))
            await asyncio.sleep(1.0)
            assert await _routing_version(api, 1), "nothing applied while Redis refused writes"
            await admin.config_set("maxmemory", 0)
            await eventually(lambda: _routing_version(api, 2), timeout_s=10)
        finally:
            await admin.config_set("maxmemory", 0)
            await admin.aclose()


async def test_a_routing_put_on_one_worker_decides_the_next_lead_on_every_worker(worker_factory, api_factory):
    # Neither worker polls during the test: only the version check inside every decision step can
    # make a worker that did not take the change decide by it.
    env = {"DISPATCHER_ROUTING_POLL_S": "3600"}
    first, second = worker_factory(**env), worker_factory(**env)
    apis = [await api_factory(first), await api_factory(second)]
    await apis[0].rep("ana", capacity=50)
    assert (await apis[1].call("POST", "/v1/leads", {"id": "before"}))[0] == 202
    assert (await eventually(lambda: assigned(apis[1], "before")))["queue"] == "default"

    code, body = await apis[0].call("PUT", "/v1/routing", raw=b"queues: {after: {strategy: online_now}}\n")
    assert code == 200, body
    lead_ids = [f"after-{n}" for n in range(12)]
    for n, lead_id in enumerate(lead_ids):
        assert (await apis[n % 2].call("POST", "/v1/leads", {"id": lead_id}))[0] == 202
    for lead_id in lead_ids:
        decided = await eventually(lambda lead_id=lead_id: assigned(apis[0], lead_id))
        assert (decided["queue"], decided["strategy"]) == ("after", "online_now"), decided
    # The leads' partitions are shared out between the two workers: each decided some of them.
    for api in apis:
        async with api.session.get(api.base + "/metrics") as response:
            text = (await response.read()).decode()
        assert re.search(r'^dispatcher_leads_decided_total\{[^}]*queue="after"[^}]*\} [1-9]', text, re.M), api.base


async def _routing_version(api, version: int) -> bool:
    code, health = await api.call("GET", "/v1/health")
    return code == 200 and health["routing_version"] == str(version)


async def test_events_of_steps_taken_over_http_reach_kafka_from_the_outbox(worker_factory, api_factory, stack):
    worker = worker_factory()
    api = await api_factory(worker)
    await api.rep("solo", capacity=1)
    assert (await api.call("POST", "/v1/leads", {"id": "first"}))[0] == 202
    await eventually(lambda: assigned(api, "first"))
    assert (await api.call("POST", "/v1/leads", {"id": "second"}))[0] == 202
    await eventually(lambda: with_status(api, "second", "queued"))
    assert (await api.call("POST", "/v1/leads/first/close", {"outcome": "won"}))[0] == 200
    events = await read_topic(stack.broker_url, topic(worker, "assignments"),
                              until=lambda r: {e["lead_id"] for e in r} >= {"first", "second"})
    decided = next(e for e in events if e["lead_id"] == "first")
    assert decided["event_id"] == "decided:first", "announced by the worker that decided it"
    drained = next(e for e in events if e["lead_id"] == "second")
    assert drained["rep_id"] == "solo" and re.fullmatch(r"\d+-\d+", drained["event_id"]), "relayed from the outbox"
    lead_events = await read_topic(stack.broker_url, topic(worker, "lead-events"),
                                   until=lambda r: any(e["type"] == "lead_closed" for e in r))
    (archived,) = [e for e in lead_events if e["type"] == "lead_closed"]
    assert archived["lead"]["id"] == "first" and archived["lead"]["history"][-1]["event"] == "closed"
    assert archived["body"] == {"id": "first", "channel": "web", "priority": 0}
    closed = await read_topic(stack.broker_url, topic(worker, "rep-events"),
                              until=lambda r: any(e["type"] == "lead_closed" for e in r))
    assert any(e["type"] == "lead_closed" and e["by"] == "anonymous" for e in closed)


async def test_a_routing_put_over_http_outlives_a_restart_until_the_file_is_edited(worker_factory, api_factory, tmp_path):
    routing = tmp_path / "routing.yaml"
    routing.write_text("queues: {from-file: {}}\n")
    env = {"DISPATCHER_ROUTING": str(routing), "DISPATCHER_ROUTING_POLL_S": "0.2"}
    first = worker_factory(**env)
    api = await api_factory(first)
    code, body = await api.call("PUT", "/v1/routing", raw=b"queues: {from-api: {}}\n")
    assert code == 200 and body["version"] == "2"
    first.terminate()
    second = worker_factory(**env)
    api = await api_factory(second)
    await asyncio.sleep(1.0)  # several polls of the unchanged file
    code, body = await api.call("GET", "/v1/routing")
    assert (body["version"], body["source"], list(body["spec"]["queues"])) == ("2", "PUT /v1/routing", ["from-api"])
    routing.write_text("queues: {edited: {}}\n")
    await eventually(lambda: _routing_version(api, 3))
    assert list((await api.call("GET", "/v1/routing"))[1]["spec"]["queues"]) == ["edited"]
