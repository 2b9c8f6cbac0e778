"""A promotion against the dispatcher, as locust users.

- LeadFormUser: web forms and chats posting leads over HTTP.
- KafkaLeadUser: a producer writing leads straight to the `leads` topic; every lead's produced ->
  assigned latency comes back as a locust request ("kafka", "lead produced -> assigned"), read from
  the `assignments` topic.
- RepUser: a rep who signs in, heartbeats, and closes its open leads after a handle time, so
  capacity frees and the queue drains as on a real floor.
- PromotionShape: baseline, a steep ramp to ten times the baseline, a hold, and back.

HTTP users spread over the workers in LOADTEST_HOSTS (comma-separated base URLs; default: --host),
as a load balancer in front of several workers would.

Settings (environment): DISPATCHER_BROKER (kafka://host:port, for KafkaLeadUser),
DISPATCHER_TOPIC_PREFIX, DISPATCHER_API_TOKEN, LOADTEST_REPS, LOADTEST_REP_CAPACITY,
LOADTEST_HANDLE_TIME_S, LOADTEST_LEADS_PER_USER_S, LOADTEST_BASELINE_USERS, and the shape's
LOADTEST_BASELINE_S / RAMP_S / HOLD_S / COOLDOWN_S.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
import uuid

import gevent
import orjson
from locust import FastHttpUser, LoadTestShape, User, between, constant_throughput, events, task

from loadtest.broker import READ_FETCH_WAIT_MS
from loadtest.shapes import promotion_stages

TOKEN = os.environ.get("DISPATCHER_API_TOKEN", "")
HEADERS = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}
TOPIC_PREFIX = os.environ.get("DISPATCHER_TOPIC_PREFIX", "")
BROKER = os.environ.get("DISPATCHER_BROKER", "kafka://127.0.0.1:9092").removeprefix("kafka://")
REPS = int(os.environ.get("LOADTEST_REPS", "100"))
REP_CAPACITY = int(os.environ.get("LOADTEST_REP_CAPACITY", "1000"))
HANDLE_TIME_S = float(os.environ.get("LOADTEST_HANDLE_TIME_S", "5"))
# A rep works a few leads per look at its list, as a person would; at a promotion's peak the
# floor's capacity, not its closing speed, is what keeps leads flowing.
CLOSES_PER_LOOK = 4
LEADS_PER_USER_S = float(os.environ.get("LOADTEST_LEADS_PER_USER_S", "10"))
LEADS_PER_HANDOVER = 5
CHANNELS = ("web", "chat", "call", "email", "form")
RUN = uuid.uuid4().hex[:6]
_serial = itertools.count()
_hosts = itertools.cycle(filter(None, os.environ.get("LOADTEST_HOSTS", "").split(",")))


def new_lead(rng: random.Random, source: str) -> dict:
    return {
        "id": f"lt-{RUN}-{source}-{next(_serial)}",
        "channel": rng.choice(CHANNELS),
        "priority": rng.choices(range(10), weights=(30, 20, 15, 10, 8, 6, 4, 3, 2, 2))[0],
        "value": round(rng.lognormvariate(7, 1), 2),
        "attributes": {"source": "promotion" if source == "kafka" else "web-form"},
    }


class BalancedHttpUser(FastHttpUser):
    """An HTTP user on the next worker in turn; the host must be chosen before locust builds the client."""

    abstract = True

    def __init__(self, environment) -> None:  # type: ignore[no-untyped-def]
        self.host = next(_hosts, None) or environment.host
        super().__init__(environment)


class LeadFormUser(BalancedHttpUser):
    weight = 1
    wait_time = constant_throughput(LEADS_PER_USER_S)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task
    def post_lead(self) -> None:
        self.client.post("/v1/leads", data=orjson.dumps(new_lead(self.rng, "http")), headers=HEADERS,
                         name="POST /v1/leads")


class AssignmentWatcher:
    """One per locust process: reads `assignments` from its end and reports each lead the
    process produced as a request with its produced -> assigned latency: from the moment the lead
    is handed to the producer to the timestamp the dispatcher's producer gave its assignment event,
    so how late this reader gets to the event is not counted. It may then wait long for a fetch,
    and must on the embedded broker, which gives up a fetch on a long topic within a short wait
    (loadtest/broker.py)."""

    _instance: AssignmentWatcher | None = None
    _lock = threading.Lock()

    def __init__(self, environment) -> None:
        from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

        self.environment = environment
        self.sent_at: dict[str, float] = {}
        self.producer = Producer({"bootstrap.servers": BROKER, "linger.ms": 2, "enable.idempotence": False})
        # Assigning partitions directly skips a consumer-group join, which costs seconds on some brokers.
        self.consumer = Consumer({"bootstrap.servers": BROKER, "group.id": f"locust-{RUN}",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": READ_FETCH_WAIT_MS})
        topic = TOPIC_PREFIX + "assignments"
        metadata = self.consumer.list_topics(topic, timeout=10).topics[topic]
        self.consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in metadata.partitions])
        gevent.spawn(self._watch)

    @classmethod
    def get(cls, environment) -> AssignmentWatcher:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls(environment)
            return cls._instance

    def send(self, lead: dict) -> None:
        self.sent_at[lead["id"]] = time.time() * 1000
        self.producer.produce(TOPIC_PREFIX + "leads", key=lead["id"], value=orjson.dumps(lead))
        self.producer.poll(0)

    def _watch(self) -> None:
        # Whatever has arrived, in one call: at a promotion's peak, one poll per event cost the load
        # generator the CPU the dispatcher needed (both share this machine).
        while True:
            messages = self.consumer.consume(num_messages=1000, timeout=0)
            self.producer.poll(0)
            if not messages:
                gevent.sleep(0.002)
                continue
            for message in messages:
                if message.error():
                    continue
                started = self.sent_at.pop(orjson.loads(message.value())["lead_id"], None)
                if started is not None:
                    self.environment.events.request.fire(
                        request_type="kafka", name="lead produced -> assigned",
                        response_time=message.timestamp()[1] - started, response_length=len(message.value()),
                        exception=None, context={},
                    )


class KafkaLeadUser(User):
    """A source of promotion traffic (an ad campaign's form backend, a chat widget's queue) that
    hands over a few leads at a time, as such sources do; its rate is LEADS_PER_USER_S all the same."""

    weight = 9
    wait_time = constant_throughput(LEADS_PER_USER_S / LEADS_PER_HANDOVER)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.watcher = AssignmentWatcher.get(self.environment)

    @task
    def produce_leads(self) -> None:
        for _ in range(LEADS_PER_HANDOVER):
            self.watcher.send(new_lead(self.rng, "kafka"))


class RepUser(BalancedHttpUser):
    fixed_count = REPS
    wait_time = between(1.0, 2.0)

    def on_start(self) -> None:
        self.rep_id = f"lt-rep-{RUN}-{uuid.uuid4().hex[:6]}"
        self.first_seen: dict[str, float] = {}
        self.handle_s: dict[str, float] = {}
        self.last_heartbeat = 0.0
        capacity = {channel: REP_CAPACITY for channel in CHANNELS}
        self.client.put(f"/v1/reps/{self.rep_id}", data=orjson.dumps({"capacity": capacity}),
                        headers=HEADERS, name="PUT /v1/reps/{id}")
        self.heartbeat()

    def heartbeat(self) -> None:
        self.client.post(f"/v1/reps/{self.rep_id}/presence", data=b'{"status": "online"}', headers=HEADERS,
                         name="POST /v1/reps/{id}/presence")
        self.last_heartbeat = time.monotonic()

    @task
    def work(self) -> None:
        now = time.monotonic()
        if now - self.last_heartbeat > 10:
            self.heartbeat()
        with self.client.get(f"/v1/reps/{self.rep_id}/leads", headers=HEADERS, name="GET /v1/reps/{id}/leads",
                             catch_response=True) as response:
            open_leads = response.json()["leads"] if response.status_code == 200 else []
        due = []
        for lead_id in open_leads:
            seen = self.first_seen.setdefault(lead_id, now)
            if now - seen >= self.handle_s.setdefault(lead_id, random.expovariate(1 / HANDLE_TIME_S)):
                due.append(lead_id)
        for lead_id in due[:CLOSES_PER_LOOK]:
            self.client.post(f"/v1/leads/{lead_id}/close", data=b'{"outcome": "won"}', headers=HEADERS,
                             name="POST /v1/leads/{id}/close")
            self.first_seen.pop(lead_id, None)
            self.handle_s.pop(lead_id, None)


class PromotionShape(LoadTestShape):
    """Lead-producing users over time; the reps are a fixed count beside them."""

    stages = promotion_stages(
        baseline_users=int(os.environ.get("LOADTEST_BASELINE_USERS", "30")),
        baseline_s=float(os.environ.get("LOADTEST_BASELINE_S", "20")),
        ramp_s=float(os.environ.get("LOADTEST_RAMP_S", "10")),
        hold_s=float(os.environ.get("LOADTEST_HOLD_S", "60")),
        cooldown_s=float(os.environ.get("LOADTEST_COOLDOWN_S", "20")),
        fixed_users=REPS,
    )

    def tick(self):
        elapsed = self.get_run_time()
        for stage in self.stages:
            if elapsed < stage.until_s:
                return stage.users, stage.spawn_rate
        return None


@events.quitting.add_listener
def _flush_producer(environment, **_):
    if AssignmentWatcher._instance is not None:
        AssignmentWatcher._instance.producer.flush(10)
