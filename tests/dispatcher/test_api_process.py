"""`dispatcher api` beside a worker on the embedded stack: the api process serves the same API,
takes leads onto the topic and runs the HTTP steps in redis, but never consumes, so the worker
decides every lead and relays every event from the outbox."""

from __future__ import annotations

import asyncio

from dispatcher.embedded import EmbeddedStack
from dispatcher.transport import key_partitioner
from tests.dispatcher.conftest import assigned, topic, with_status
from tests.dispatcher.test_notify import sse_events
from tests.kafka_io import eventually, read_topic

PARTITIONS = 4  # DISPATCHER_TOPIC_PARTITIONS' default


def partition_of(lead_id: str) -> int:
    """The partition of `leads` the producers put this lead on (the lead id is the record key)."""
    return key_partitioner(lead_id.encode(), list(range(PARTITIONS)), [])


def one_lead_per_partition() -> list[str]:
    """Lead ids (the record keys) that the producers' partitioner puts one on each
    partition of `leads`, so a partition held by anyone but the worker would leave one undecided."""
    ids: dict[int, str] = {}
    n = 0
    while len(ids) < PARTITIONS:
        lead_id = f"split-{n}"
        ids.setdefault(partition_of(lead_id), lead_id)
        n += 1
    return [ids[partition] for partition in range(PARTITIONS)]


async def test_leads_wait_on_an_api_process_alone_and_a_worker_decides_them_all(api_process_factory, worker_factory,
                                                                                api_factory):
    front = await api_factory(api_process_factory())
    code, health = await front.call("GET", "/v1/health")
    assert code == 200 and health["status"] == "ok" and health["role"] == "api", health
    await front.rep("ana", capacity=10)
    lead_ids = one_lead_per_partition()
    for lead_id in lead_ids:
        assert await front.call("POST", "/v1/leads", {"id": lead_id}) == (
            202, {"id": lead_id, "status": "accepted", "duplicate": False})
    await asyncio.sleep(1.0)
    for lead_id in lead_ids:
        assert (await front.lead_status(lead_id))["status"] == "pending", "nothing decides without a worker"

    worker = worker_factory()
    back = await api_factory(worker)
    for lead_id in lead_ids:
        on_front = await eventually(lambda lead_id=lead_id: assigned(front, lead_id))
        assert on_front == await back.lead_status(lead_id) and on_front["rep_id"] == "ana"

    async def worker_holds_every_partition() -> bool:
        async with back.session.get(back.base + "/metrics") as response:
            exported = await response.text()
        return all(f'dispatcher_consumer_lag_messages{{partition="{n}"}}' in exported for n in range(PARTITIONS))

    await eventually(worker_holds_every_partition, timeout_s=5)
    code, health = await back.call("GET", "/v1/health")
    assert code == 200 and health["role"] == "all"


async def test_leads_a_hung_broker_does_not_take_are_refused_in_time_and_sent_again_decided_once(
        api_process_factory, worker_factory, api_factory, tmp_path, drift_check):
    """POST /v1/leads answers 202 only once the broker has the lead. With the broker stuck, every
    post answers 503 within the produce timeout, in words and in the log, even those whose send
    itself waits: six 6 KB leads on one partition fill the producer's batch, and a send with no
    room waits as long as the producer's request timeout (20 minutes). Sent again once the broker
    is back, each lead is decided once, even if its first send reached the topic after all."""
    lead_ids = [lead_id for lead_id in (f"big-{n}" for n in range(100)) if partition_of(lead_id) == 0][:6]
    with EmbeddedStack(tmp_path / "own-stack") as own:
        api_process = api_process_factory(**own.worker_env)
        front = await api_factory(api_process)
        await front.rep("ana", capacity=10)
        with own.broker_hung():
            answers = await asyncio.gather(*(
                asyncio.wait_for(front.call("POST", "/v1/leads", {"id": lead_id, "attributes": {"note": "x" * 6000}}),
                                 30)
                for lead_id in lead_ids))
        refused = (503, {"error": "the broker did not take the lead (not within 10 s); send it again"})
        assert answers == [refused] * len(lead_ids)
        logged = api_process.log_tail(200)
        assert all(f"lead {lead_id} answered 503, the broker did not take it: not within 10 s" in logged
                   for lead_id in lead_ids), logged

        for lead_id in lead_ids:
            assert await front.call("POST", "/v1/leads", {"id": lead_id}) == (
                202, {"id": lead_id, "status": "accepted", "duplicate": True})
        worker = worker_factory(**own.worker_env)
        for lead_id in lead_ids:
            lead = await eventually(lambda lead_id=lead_id: assigned(front, lead_id), timeout_s=30)
            assert [entry["event"] for entry in lead["history"]] == ["accepted", "assigned"]
        await asyncio.sleep(1.0)  # first sends the broker kept after all are consumed by now
        assert (await front.call("GET", "/v1/reps/ana"))[1]["load"] == len(lead_ids)
        drift_check(own.redis_url, worker.env["DISPATCHER_WORKSPACE"])
        # Stopped while their broker still runs: without one, stopping waits out its timeouts.
        worker.terminate()
        api_process.terminate()


async def test_presence_on_the_api_process_drains_a_lead_the_worker_relays_and_sse_tells(
        api_process_factory, worker_factory, api_factory, stack):
    worker = worker_factory()
    api_process = api_process_factory()
    front, back = await api_factory(api_process), await api_factory(worker)
    await front.rep("bo", capacity=1, status="offline")
    assert (await front.call("POST", "/v1/leads", {"id": "waits"}))[0] == 202
    await eventually(lambda: with_status(back, "waits", "queued"))
    async with front.session.get(f"{front.base}/v1/reps/bo/events") as stream:
        assert stream.status == 200
        code, rep = await front.call("POST", "/v1/reps/bo/presence", {"status": "online"})
        assert code == 200 and rep["load"] == 1, "the presence step drained the waiting lead"
        (told,) = await asyncio.wait_for(sse_events(stream, 1), 5)
    assert told["event"] == "assignment" and told["data"]["lead_id"] == "waits"
    assert (await back.lead_status("waits"))["rep_id"] == "bo"
    events = await read_topic(stack.broker_url, topic(worker, "assignments"), until=lambda r: len(r) >= 1)
    assert [(e["lead_id"], e["rep_id"]) for e in events] == [("waits", "bo")], \
        "the drain reached Kafka once, from the outbox the worker relays"

    # The live page's picture, sampled by the api process itself (it runs no sampling timer).
    code, picture = await front.call("GET", "/v1/live")
    assert code == 200 and [rep["id"] for rep in picture["reps"]] == ["bo"] and picture["assigned_total"] == 1
    assert [(queue["queue"], queue["assignments"]) for queue in picture["fairness"]] == [("default", 1)]

    # The api process's /metrics are its own: the drain and the HTTP intake it made.
    async with front.session.get(front.base + "/metrics") as response:
        exported = await response.text()
    assert 'dispatcher_leads_drained_total{queue="default",strategy="load_aware"} 1.0' in exported
    assert 'dispatcher_leads_received_total{source="http"} 1.0' in exported
    assert 'dispatcher_leads_received_total{source="kafka"}' not in exported, "it reads no leads from Kafka"

    # Bad input: the same refusal, in the same words, from either process.
    for method, path, body in (("POST", "/v1/leads", {"id": "no spaces allowed"}),
                               ("PUT", "/v1/reps/bo", {"capacity": -1}),
                               ("POST", "/v1/reps/bo/presence", {"status": "asleep"}),
                               ("GET", "/v1/nothing-here", None)):
        refused = await front.call(method, path, body)
        assert 400 <= refused[0] < 500 and refused == await back.call(method, path, body), (path, refused)
