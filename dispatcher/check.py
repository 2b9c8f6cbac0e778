"""`dispatcher check`: the invariants of the contract that live in Redis, verified against one
consistent snapshot of a workspace. Every drift is one line in words. An error is a broken
invariant; a warning is staleness the scripts tolerate by design and heal when they meet it.

The snapshot is one MULTI/EXEC transaction of plain reads. Redis runs it whole between two
scripts, so no step is ever seen half done, and the rules stay in Python, read and tested like
the rest of the code (a read-only Lua script would hold Redis just as long, and a check written
in the scripts' own language would share their blind spots). SCAN cannot run inside a
transaction, so the queue keys are listed first and the transaction reads the routing version
again: when a routing change came in between, the snapshot is taken again.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from dispatcher.routing import Queue, Routing, RoutingError, parse_routing
from dispatcher.state.keys import Keys
from dispatcher.state.reads import WAIT_BAND
from strategies import policy
from strategies.base import OUTCOME_DAYS

STATUSES = ("pending", "queued", "offered", "assigned", "pooled", "closed")
# Statuses that hold a unit of their rep's capacity, and an entry in the open set.
HOLDING = ("offered", "assigned")
# A routing change between listing the keys and reading them is rare; one that keeps coming
# back means something rewrites the routing in a loop.
SNAPSHOT_ATTEMPTS = 10
# Keys of one queue that are not per channel or bucket, then those that are.
WHOLE_QUEUE_KINDS = ("members", "state", "pool")
PER_CHANNEL_KINDS = ("ready", "wait", "waitidx")
# The notifications stream is trimmed (MAXLEN ~) to about lib.lua's NOTIFY_KEPT entries; `~` trims
# whole stream nodes only, so it may hold a node's worth more. Far beyond that, trimming has stopped.
NOTIFY_KEPT = 100_000
NOTIFY_SLACK = 1_000
# The newest notifications whose shape is checked: enough to catch a step writing them wrong,
# without reading the whole stream inside the snapshot's transaction.
NOTIFY_CHECKED = 1_000
NOTIFY_KINDS = ("row", "moved", "value")
# A shift boundary this long past, still not applied: no worker runs the shift timer.
SHIFT_OVERDUE_MS = 60_000


class CheckError(RuntimeError):
    """The workspace could not be read into a snapshot; the message says why."""


@dataclass(frozen=True)
class Drift:
    severity: str  # "error" | "warning"
    kind: str
    message: str

    @property
    def line(self) -> str:
        return f"{self.severity}: {self.message}"


@dataclass(frozen=True)
class Report:
    workspace: str
    routing_version: str
    leads: int
    reps: int
    queues: int
    drift: tuple[Drift, ...]

    @property
    def errors(self) -> list[Drift]:
        return [d for d in self.drift if d.severity == "error"]

    @property
    def warnings(self) -> list[Drift]:
        return [d for d in self.drift if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        counted = f"{self.leads} leads, {self.reps} reps, {self.queues} queues"
        if self.ok:
            warned = f" ({len(self.warnings)} warnings)" if self.warnings else ""
            return f"ok: {counted} checked{warned}"
        return f"drift: {len(self.errors)} errors, {len(self.warnings)} warnings in {counted}"

    def lines(self) -> list[str]:
        return [*(d.line for d in self.errors), *(d.line for d in self.warnings), self.summary()]

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "workspace": self.workspace, "routing_version": self.routing_version,
            "leads": self.leads, "reps": self.reps, "queues": self.queues,
            "errors": [{"kind": d.kind, "message": d.message} for d in self.errors],
            "warnings": [{"kind": d.kind, "message": d.message} for d in self.warnings],
        }


@dataclass(frozen=True)
class QueueKey:
    """A key under the workspace's q: prefix, by its parts: queue, kind, and the channel or
    capacity bucket it is for (none for members)."""

    name: str
    queue: str
    kind: str
    where: str = ""


@dataclass
class Snapshot:
    now_ms: int
    routing_version: str
    routing_at: int | None  # when the routing in force was applied (ms); None before the first
    leads: dict[str, Any]  # lead id -> record; None when the stored value is not a JSON object
    profiles: dict[str, Any]
    capacity: dict[tuple[str, str], str]  # (rep, bucket) -> raw value
    load: dict[tuple[str, str], str]
    skills: set[tuple[str, str]]
    status: dict[str, str]
    seen: dict[str, float]
    open: list[str]
    closed: set[str]
    held: list[str] = field(default_factory=list)
    due: dict[str, float] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    state: dict[str, dict[str, str]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    ready: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    wait: dict[tuple[str, str], list[tuple[str, float]]] = field(default_factory=dict)
    waitidx: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    pool: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    offers: list[str] = field(default_factory=list)
    breach_counts: dict[str, str] = field(default_factory=dict)
    rep_log: list[str] = field(default_factory=list)
    rep_log_oldest: dict[str, float] = field(default_factory=dict)
    notify_length: int = 0
    notify_latest: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    shift: dict[str, str] = field(default_factory=dict)  # rep -> "on" | "off"; none: always on shift
    shift_due: dict[str, float] = field(default_factory=dict)  # rep -> when its shift state next flips (ms)
    # Keys under q: the routing in force does not name, with how many entries each holds.
    stray: dict[QueueKey, int] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)


def _parse_queue_key(prefix: str, name: str) -> QueueKey | None:
    parts = name.removeprefix(prefix).split(":")
    if len(parts) == 2 and parts[1] in WHOLE_QUEUE_KINDS:
        return QueueKey(name, parts[0], parts[1])
    if len(parts) == 3 and parts[1] in PER_CHANNEL_KINDS:
        return QueueKey(name, parts[0], parts[1], parts[2])
    return None


def expected_queue_keys(keys: Keys, routing: Routing) -> list[QueueKey]:
    found = []
    for queue in routing.queues:
        name = queue.name
        found.append(QueueKey(keys.queue_members(name), name, "members"))
        found.append(QueueKey(keys.queue_state(name), name, "state"))
        found.append(QueueKey(keys.queue_pool(name), name, "pool"))
        found.extend(QueueKey(keys.queue_ready(name, b), name, "ready", b) for b in ("*", *routing.channels))
        found.extend(QueueKey(keys.queue_wait(name, c), name, "wait", c) for c in routing.channels)
        found.extend(QueueKey(keys.queue_wait_index(name, c), name, "waitidx", c) for c in routing.channels)
    return found


def _pairs(fields: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """A "rep|bucket" (or "rep|skill") hash as (rep, bucket) pairs; '|' never occurs in an id."""
    return {tuple(name.rsplit("|", 1)): value for name, value in fields.items() if "|" in name}  # type: ignore[misc]


def _json_any(raw: str) -> Any:
    """The JSON value of `raw`, or None when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _json_object(raw: str) -> Any:
    value = _json_any(raw)
    return value if isinstance(value, dict) else None


def read_snapshot(client: redis.Redis, keys: Keys, fallback: Routing) -> tuple[Snapshot, Routing]:
    """The workspace as one transaction saw it, and the routing it is judged by: the routing in
    force, or `fallback` while none has been applied (version "0": the steps then run with the
    routing their caller holds). `client` must decode responses."""
    prefix = keys.queue_prefix
    for _ in range(SNAPSHOT_ATTEMPTS):
        version, spec, source = client.hmget(keys.routing, ["version", "spec", "source"])
        version = version or "0"
        routing = fallback
        if spec is not None:
            try:
                routing = parse_routing(spec, source or "the routing in force")
            except RoutingError as exc:
                raise CheckError(f"the routing in force (version {version}) cannot be read: {exc}") from None
        expected = expected_queue_keys(keys, routing)
        known = {k.name for k in expected}
        listed = [name for name in client.scan_iter(match=f"{prefix}*", count=1000) if name not in known]
        snapshot = _read_once(client, keys, expected, listed, prefix)
        if snapshot.routing_version == version:
            return snapshot, routing
    raise CheckError(f"the routing changed under {SNAPSHOT_ATTEMPTS} attempts to take a snapshot")


def _read_once(client: redis.Redis, keys: Keys, expected: list[QueueKey], listed: list[str],
               prefix: str) -> Snapshot:
    pipe = client.pipeline(transaction=True)
    pipe.hmget(keys.routing, ["version", "at"]).time()
    pipe.hgetall(keys.leads).hgetall(keys.rep_profiles).hgetall(keys.rep_capacity).hgetall(keys.rep_load)
    pipe.hkeys(keys.rep_skills).hgetall(keys.rep_status).zrange(keys.rep_seen, 0, -1, withscores=True)
    pipe.zrange(keys.open_leads, 0, -1).zrange(keys.closed_leads, 0, -1).hgetall(keys.outcomes)
    pipe.zrange(keys.held_leads, 0, -1).zrange(keys.due, 0, -1, withscores=True).hgetall(keys.owners)
    pipe.zrange(keys.offers, 0, -1).hgetall(keys.breach_counts)
    pipe.zrange(keys.rep_log, 0, -1).zrange(keys.rep_log_oldest, 0, -1, withscores=True)
    pipe.xlen(keys.notifications).xrevrange(keys.notifications, count=NOTIFY_CHECKED)
    pipe.hgetall(keys.rep_shift).zrange(keys.rep_shift_due, 0, -1, withscores=True)
    stray = [(name, _parse_queue_key(prefix, name)) for name in listed]
    queue_keys = expected + [qk for _, qk in stray if qk is not None]
    for qk in queue_keys:
        if qk.kind == "members":
            pipe.smembers(qk.name)
        elif qk.kind == "state":
            pipe.hgetall(qk.name)
        else:
            pipe.zrange(qk.name, 0, -1, withscores=qk.kind in ("wait", "pool"))
    (routing_row, now, leads, profiles, capacity, load, skills, status, seen, open_members, closed, outcomes, held, due,
     owners, offers, breach_counts, rep_log, rep_log_oldest, notify_length, notify_latest, shift, shift_due,
     *queue_replies) = pipe.execute(raise_on_error=False)
    for reply in (routing_row, now, leads, profiles, capacity, load, skills, status, seen, open_members, closed, outcomes,
                  held, due, owners, offers, breach_counts, rep_log, rep_log_oldest, notify_length, notify_latest,
                  shift, shift_due):
        if isinstance(reply, Exception):
            raise CheckError(f"a workspace key cannot be read: {reply}")
    version, routing_at = routing_row
    snapshot = Snapshot(
        now_ms=int(now[0]) * 1000 + int(now[1]) // 1000,
        routing_version=version or "0",
        routing_at=int(routing_at) if routing_at else None,
        leads={lead_id: _json_object(raw) for lead_id, raw in leads.items()},
        profiles={rep: _json_object(raw) for rep, raw in profiles.items()},
        capacity=_pairs(capacity), load=_pairs(load), skills={tuple(name.rsplit("|", 1)) for name in skills},  # type: ignore[misc]
        status=status, seen=dict(seen), open=open_members, closed=set(closed), outcomes=outcomes, held=held,
        due=dict(due), owners=owners, offers=offers, breach_counts=breach_counts, rep_log=rep_log,
        rep_log_oldest=dict(rep_log_oldest), notify_length=notify_length, notify_latest=notify_latest,
        shift=shift, shift_due=dict(shift_due),
    )
    stray_names = {qk.name for _, qk in stray if qk is not None}
    for qk, reply in zip(queue_keys, queue_replies, strict=True):
        if isinstance(reply, Exception):
            snapshot.unreadable[qk.name] = str(reply)
            continue
        if qk.name in stray_names and reply:
            snapshot.stray[qk] = len(reply)
        where = (qk.queue, qk.where)
        if qk.kind == "members":
            snapshot.members.setdefault(qk.queue, set()).update(reply)
        elif qk.kind == "state":
            snapshot.state[qk.queue] = reply
        elif qk.kind == "ready":
            snapshot.ready[where] = reply
        elif qk.kind == "wait":
            snapshot.wait[where] = reply
        elif qk.kind == "pool":
            snapshot.pool[qk.queue] = reply
        else:
            snapshot.waitidx[where] = reply
    for name, qk in stray:
        if qk is None:
            snapshot.stray[QueueKey(name, "", "unknown")] = 0
    return snapshot


def wait_entry(record: Mapping[str, Any]) -> str:
    """The lead's entry in its queue's wait index, as lib.lua's wait_entry writes it."""
    lead = record["lead"]
    skills = lead.get("skills")
    signature = "+".join(sorted(set(skills))) if isinstance(skills, list) else ""
    return f"{signature}|{9 - lead['priority']}{record['accepted_at']:014d}|{record['id']}"


def held_entry(record: Mapping[str, Any]) -> str:
    """The lead's entry in `held`, as lib.lua's held_entry writes it."""
    return f"{record['held_for']}|{9 - record['lead']['priority']}{record['accepted_at']:014d}|{record['id']}"


def wait_score(record: Mapping[str, Any]) -> int:
    return (9 - record["lead"]["priority"]) * WAIT_BAND + record["accepted_at"]


def _readable(record: Mapping[str, Any]) -> bool:
    lead = record.get("lead")
    return (isinstance(lead, dict) and isinstance(lead.get("channel"), str) and isinstance(lead.get("priority"), int)
            and isinstance(record.get("accepted_at"), int))


def _lead_skills(record: Mapping[str, Any]) -> list[str]:
    skills = record["lead"].get("skills")
    return skills if isinstance(skills, list) else []


def _left_reps(record: Mapping[str, Any]) -> set[str]:
    """The reps a re-route never hands the lead to: the one a supervisor moved it away from, and
    those that let it go (an offer let go, a release, a missed first contact)."""
    left = set(record.get("let_go") or [])
    if not record.get("reassigned"):
        return left
    for entry in reversed(record.get("history") or []):
        if isinstance(entry, dict) and entry.get("event") in ("assigned", "reassigned"):
            return left | {entry.get("rep_id")}
    return left


class _Analysis:
    def __init__(self, snapshot: Snapshot, routing: Routing, presence_ttl_ms: int) -> None:
        self.s = snapshot
        self.routing = routing
        self.presence_ttl_ms = presence_ttl_ms
        self.drift: list[Drift] = []
        self.records = {i: r for i, r in snapshot.leads.items() if r is not None}
        self.queues = {q.name: q for q in routing.queues}
        self.caps: dict[str, dict[str, int]] = defaultdict(dict)
        self.loads: dict[tuple[str, str], int] = {}
        # Open-set entries whose lead record agrees (assigned to that rep): the rep's open leads.
        self.open_pairs: set[tuple[str, str]] = set()

    def error(self, kind: str, message: str) -> None:
        self.drift.append(Drift("error", kind, message))

    def warning(self, kind: str, message: str) -> None:
        self.drift.append(Drift("warning", kind, message))

    def present(self, rep: str) -> bool:
        return self.s.status.get(rep) == "online" and self.s.seen.get(rep, 0) >= self.s.now_ms - self.presence_ttl_ms

    def on_shift(self, rep: str) -> bool:
        return self.s.shift.get(rep) != "off"

    def can_work(self, rep: str) -> bool:
        """Whether the scripts may give the rep new work (lib.lua can_work): present and on shift."""
        return self.present(rep) and self.on_shift(rep)

    def recent_enough(self, queue: Queue, rep: str) -> bool:
        window = queue.heartbeat_window_ms
        return window <= 0 or self.s.seen.get(rep, 0) >= self.s.now_ms - window

    def bucket_for(self, rep: str, channel: str) -> str | None:
        caps = self.caps.get(rep, {})
        return "*" if "*" in caps else channel if channel in caps else None

    def room(self, rep: str, bucket: str) -> bool:
        return self.loads.get((rep, bucket), 0) < self.caps.get(rep, {}).get(bucket, 0)

    def run(self) -> list[Drift]:
        self.check_records()
        self.check_capacity()
        self.check_open_set()
        self.check_loads()
        self.check_waiting()
        self.check_held()
        self.check_pools()
        self.check_offers()
        self.check_due()
        self.check_owners()
        self.check_closed_set()
        self.check_members()
        self.check_ready()
        self.check_shifts()
        self.check_turns()
        self.check_outcomes()
        self.check_stuck()
        self.check_breach_counts()
        self.check_rep_log()
        self.check_notifications()
        self.check_stray_keys()
        return self.drift

    def check_records(self) -> None:
        for lead_id, record in sorted(self.s.leads.items()):
            if record is None:
                self.error("unreadable_lead", f"lead {lead_id}: its record is not a JSON object")
            elif record.get("status") not in STATUSES:
                self.error("unknown_status", f"lead {lead_id} has status {record.get('status')!r}, "
                                             f"which is none of {', '.join(STATUSES)}")
                self.records.pop(lead_id)
            elif not _readable(record):
                self.error("unreadable_lead", f"lead {lead_id}: its record lacks the lead's channel or priority, "
                                              "or when it was accepted")
                self.records.pop(lead_id)

    def check_capacity(self) -> None:
        for (rep, bucket), raw in sorted(self.s.capacity.items()):
            try:
                self.caps[rep][bucket] = int(raw)
            except ValueError:
                self.error("unreadable_capacity", f"rep {rep} bucket {bucket}: capacity {raw!r} is not a number")
        for (rep, bucket), raw in sorted(self.s.load.items()):
            try:
                self.loads[rep, bucket] = int(raw)
            except ValueError:
                self.error("unreadable_load", f"rep {rep} bucket {bucket}: load {raw!r} is not a number")
        for rep, profile in sorted(self.s.profiles.items()):
            if profile is None:
                self.error("unreadable_profile", f"rep {rep}: its profile is not a JSON object")
                continue
            capacity = profile.get("capacity")
            wanted = {"*": capacity} if isinstance(capacity, int) else capacity
            if wanted != self.caps.get(rep, {}):
                self.error("capacity_mismatch", f"rep {rep}: capacity fields {_buckets(self.caps.get(rep, {}))} "
                                                f"differ from its profile's capacity {_buckets(wanted or {})}")
        for rep in sorted(set(self.caps) - set(self.s.profiles)):
            self.error("capacity_of_unknown_rep", f"rep {rep} has capacity fields but no profile")

    def check_open_set(self) -> None:
        on_reps: dict[str, list[str]] = defaultdict(list)
        for entry in self.s.open:
            rep, _, lead_id = entry.partition("|")
            on_reps[lead_id].append(rep)
            record = self.records.get(lead_id)
            if record is None:
                self.error("open_unknown_lead", f"open set holds lead {lead_id} on rep {rep}, but the lead is unknown")
            elif record["status"] not in HOLDING:
                self.error("open_not_assigned", f"lead {lead_id} is {record['status']} but still in the open set "
                                                f"of rep {rep}")
            elif record.get("rep_id") != rep:
                self.error("open_other_rep", f"lead {lead_id} is assigned to {record.get('rep_id')} but is also "
                                             f"in the open set of rep {rep}")
            else:
                self.open_pairs.add((rep, lead_id))
        for lead_id, record in sorted(self.records.items()):
            if record["status"] not in HOLDING:
                continue
            rep, bucket, channel = record.get("rep_id"), record.get("bucket"), record["lead"].get("channel")
            if rep not in on_reps.get(lead_id, ()):
                self.error("assigned_not_open", f"lead {lead_id} is {record['status']} to {rep} but not in the open "
                                                "set, so no unit of the rep's capacity is reserved for it, or its "
                                                "close cannot free the unit it holds")
            if rep not in self.s.profiles:
                self.error("assigned_unknown_rep", f"lead {lead_id} is assigned to {rep}, a rep with no profile")
            elif bucket not in ("*", channel) or bucket not in self.caps.get(rep, {}):
                self.error("assigned_bad_bucket", f"lead {lead_id} is assigned to {rep} in bucket {bucket}, which is "
                                                  f"not that rep's capacity bucket for channel {channel}")

    def check_loads(self) -> None:
        counted = Counter((rep, self.records[lead_id].get("bucket")) for rep, lead_id in self.open_pairs)
        for rep, bucket in sorted(set(self.loads) | set(counted), key=str):
            load, open_leads = self.loads.get((rep, bucket), 0), counted.get((rep, bucket), 0)
            if load != open_leads:
                self.error("load_mismatch", f"rep {rep} bucket {bucket}: load is {load}, but it has {open_leads} "
                                            "open leads there")
            if load < 0:
                self.error("negative_load", f"rep {rep} bucket {bucket}: load is {load}, below zero")
            capacity = self.caps.get(rep, {}).get(bucket)
            if capacity is None and load > 0:
                self.error("over_capacity", f"rep {rep} bucket {bucket}: load {load}, but the rep has no capacity "
                                            "in that bucket")
            elif load > (capacity or 0):
                self.error("over_capacity", f"rep {rep} bucket {bucket}: load {load} is over its capacity {capacity}")

    def check_waiting(self) -> None:
        """A queued lead is in exactly one wait set and its wait-index twin: its queue's, for its
        channel, under the right score and entry. Nothing else is in any wait set."""
        waits: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
        for (queue, channel), entries in self.s.wait.items():
            for lead_id, score in entries:
                waits[lead_id].append((queue, channel, score))
        indexed: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        for (queue, channel), entries in self.s.waitidx.items():
            for entry in entries:
                indexed[entry.rsplit("|", 1)[-1]].append((queue, channel, entry))
        for lead_id, record in sorted(self.records.items()):
            if record["status"] != "queued":
                continue
            queue, channel = record.get("queue"), record["lead"].get("channel")
            if record.get("held_for"):
                for place in sorted({f"{q}/{c}" for q, c, _ in [*waits.pop(lead_id, []), *indexed.pop(lead_id, [])]}):
                    self.error("held_and_waiting", f"lead {lead_id} is held for rep {record['held_for']} but also "
                                                   f"waits in {place}, where another rep could take it")
            if queue not in self.queues:
                self.error("queued_unknown_queue", f"lead {lead_id} is queued in {queue}, a queue the routing in force "
                                                   f"(version {self.s.routing_version}) does not have")
            if channel not in self.routing.channels:
                self.error("queued_unrouted_channel", f"lead {lead_id} is queued on channel {channel}, which the "
                                                      "routing in force does not route")
            if not record.get("held_for"):
                self._check_wait_place(lead_id, record, queue, channel, waits.pop(lead_id, []),
                                       indexed.pop(lead_id, []))
        for what, leftovers in (("wait set", waits), ("wait index", indexed)):
            for lead_id, places in sorted(leftovers.items()):
                record = self.records.get(lead_id)
                for queue, channel, _ in places:
                    if record is None:
                        self.error("waiting_unknown_lead", f"{what} {queue}/{channel} holds lead {lead_id}, "
                                                           "which is unknown")
                    else:
                        self.error("waiting_not_queued", f"lead {lead_id} is {record['status']} but still in the "
                                                         f"{what} {queue}/{channel}")

    def _check_wait_place(self, lead_id: str, record: Mapping[str, Any], queue: str, channel: str,
                          waits: list[tuple[str, str, float]], indexed: list[tuple[str, str, str]]) -> None:
        home = f"{queue}/{channel}"
        scores = [score for q, c, score in waits if (q, c) == (queue, channel)]
        if not scores:
            self.error("queued_not_waiting", f"lead {lead_id} is queued in {queue} but not in the wait set {home}, "
                                             "so no count or age of the queue includes it")
        elif scores[0] != wait_score(record):
            self.error("wrong_wait_score", f"lead {lead_id} waits in {home} with score {scores[0]:.0f}, expected "
                                           f"{wait_score(record)} (priority {record['lead']['priority']}, accepted at "
                                           f"{record['accepted_at']})")
        entries = [entry for q, c, entry in indexed if (q, c) == (queue, channel)]
        wanted = wait_entry(record)
        if wanted not in entries:
            self.error("queued_not_indexed", f"lead {lead_id} is queued in {queue} but the wait index {home} lacks "
                                             f"its entry {wanted!r}, so no drain finds it")
        for entry in entries:
            if entry != wanted:
                self.error("wrong_wait_entry", f"lead {lead_id} has the entry {entry!r} in the wait index {home}, "
                                               f"expected {wanted!r}")
        elsewhere = sorted({f"{q}/{c}" for q, c, _ in [*waits, *indexed] if (q, c) != (queue, channel)})
        for place in elsewhere:
            self.error("waiting_twice", f"lead {lead_id} is queued in {home} but also waits in {place}")

    def check_held(self) -> None:
        """A lead held for its customer's last rep is queued, in `held` under its entry, and due when
        its hold runs out; nothing else is in `held`."""
        entries = set(self.s.held)
        for entry in sorted(entries):
            rep, _, rest = entry.partition("|")
            lead_id = rest.rsplit("|", 1)[-1]
            record = self.records.get(lead_id)
            if record is None or record["status"] != "queued" or not record.get("held_for"):
                status = "unknown" if record is None else f"{record['status']} and held for nobody"
                self.error("held_not_held", f"`held` holds lead {lead_id} for rep {rep}, but the lead is {status}")
            elif held_entry(record) != entry:
                self.error("wrong_held_entry", f"`held` has {entry!r} for lead {lead_id}, expected {held_entry(record)!r}")
        for lead_id, record in sorted(self.records.items()):
            if record["status"] != "queued" or not record.get("held_for"):
                continue
            if held_entry(record) not in entries:
                self.error("held_missing", f"lead {lead_id} is held for rep {record['held_for']} but not in `held`, "
                                           "so that rep never takes it when it frees up")
            if self.s.due.get(lead_id) != record.get("held_until"):
                self.error("hold_not_due", f"lead {lead_id} is held until {record.get('held_until')}, but is due at "
                                           f"{self.s.due.get(lead_id)}, so the hold does not end when it should")

    def check_pools(self) -> None:
        """A pooled lead is in exactly one pool, its queue's, scored by priority then age; it holds
        no unit (check_open_set) and is not due. Nothing else is in any pool."""
        pools: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for queue, entries in self.s.pool.items():
            for lead_id, score in entries:
                pools[lead_id].append((queue, score))
        for lead_id, record in sorted(self.records.items()):
            if record["status"] != "pooled":
                continue
            queue, places = record.get("queue"), pools.pop(lead_id, [])
            if queue not in self.queues:
                self.error("pooled_unknown_queue", f"lead {lead_id} is pooled in {queue}, a queue the routing in force "
                                                   f"(version {self.s.routing_version}) does not have")
            if [q for q, _ in places] != [queue]:
                where = ", ".join(sorted(q for q, _ in places)) or "no pool"
                self.error("pooled_not_in_its_pool", f"lead {lead_id} is pooled in queue {queue} but sits in {where}, "
                                                     "where no rep of its queue claims it")
            elif places[0][1] != wait_score(record):
                self.error("wrong_pool_score", f"lead {lead_id} sits in the pool of {queue} with score "
                                               f"{places[0][1]:.0f}, expected {wait_score(record)}")
            if lead_id in self.s.due:
                self.error("pooled_due", f"lead {lead_id} is pooled but due at {self.s.due[lead_id]:.0f}")
        for lead_id, places in sorted(pools.items()):
            record = self.records.get(lead_id)
            status = "unknown" if record is None else record["status"]
            for queue, _ in places:
                self.error("pool_not_pooled", f"the pool of {queue} holds lead {lead_id}, which is {status}")

    def check_offers(self) -> None:
        """Every offered lead is in the offers index under its queue (the live page counts a queue's
        offers there), and nothing else is. That it holds a unit of its rep is check_open_set's."""
        indexed: dict[str, list[str]] = defaultdict(list)
        for entry in self.s.offers:
            queue, _, lead_id = entry.partition("|")
            indexed[lead_id].append(queue)
        for lead_id, record in sorted(self.records.items()):
            if record["status"] != "offered":
                continue
            queues = indexed.pop(lead_id, [])
            if queues != [record.get("queue")]:
                where = ", ".join(sorted(queues)) or "nowhere"
                self.error("offer_not_indexed", f"lead {lead_id} is offered in queue {record.get('queue')} but the "
                                                f"offers index has it {where}, so the live page miscounts its offers")
        for lead_id, queues in sorted(indexed.items()):
            record = self.records.get(lead_id)
            status = "unknown" if record is None else record["status"]
            for queue in queues:
                self.error("offers_index_stale", f"the offers index counts lead {lead_id} as offered in queue {queue}, "
                                                 f"but the lead is {status}")

    def check_due(self) -> None:
        """Due are: a held lead (check_held); a lead waiting in a queue with an overflow or a pool
        time, at the earlier of the two the routing in force gives; an offered lead, no later than
        its offer's end, so no offer outlives it; an assigned lead of a queue with an SLA not yet
        contacted, at its first-contact deadline. Nothing else."""
        for lead_id, at in sorted(self.s.due.items()):
            record = self.records.get(lead_id)
            if record is None or record["status"] not in ("queued", "offered", "assigned", "pooled"):
                self.error("due_not_queued", f"lead {lead_id} is due at {at:.0f} but is "
                                             f"{'unknown' if record is None else record['status']}")
        for lead_id, record in sorted(self.records.items()):
            if record["status"] != "offered":
                continue
            due, until = self.s.due.get(lead_id), record.get("offer_until")
            if due is None or until is None or due > until:
                self.error("offer_not_due", f"lead {lead_id} is offered to {record.get('rep_id')} until {until} but is "
                                            f"due at {due}, so the offer would not end when it should")
        for lead_id, record in sorted(self.records.items()):
            queue = self.queues.get(record.get("queue"))
            if record["status"] == "assigned":
                self._check_sla_due(lead_id, record, queue)
            if record["status"] != "queued" or record.get("held_for") or queue is None:
                continue
            due = self.s.due.get(lead_id)
            since = record.get("waiting_since", record["accepted_at"])
            times = [(after_s, what) for after_s, what in ((queue.overflow and queue.overflow.after_s, "overflow"),
                                                           (queue.pool and queue.pool.after_s, "pool")) if after_s]
            if not times:
                if due is not None:
                    self.error("due_without_overflow", f"lead {lead_id} waits in queue {queue.name}, which has no "
                                                       f"overflow or pool time, but is due at {due:.0f}")
                continue
            after_s, what = min(times)
            wanted = since + int(after_s * 1000)
            if due != wanted:
                self.error("overflow_not_due", f"lead {lead_id} waits in queue {queue.name} ({what} after "
                                               f"{after_s:g} s) and should be due at {wanted}, but is due at {due}")

    def _check_sla_due(self, lead_id: str, record: Mapping[str, Any], queue: Queue | None) -> None:
        due = self.s.due.get(lead_id)
        if not record.get("contacted_at") and self.s.routing_at is not None \
                and record["assigned_at"] <= self.s.routing_at:
            # Assigned under an earlier routing: a routing change leaves the deadlines of assigned leads
            # as they were (it would have to visit every open lead), so its deadline, or its lack of
            # one, is that routing's; move_due dates it again or drops it when it falls due.
            return
        if queue is None or queue.sla is None or record.get("contacted_at"):
            if due is not None:
                self.error("due_without_sla", f"lead {lead_id} is assigned with no first contact owed "
                                              f"(queue {record.get('queue')}), but is due at {due:.0f}")
            return
        wanted = record["assigned_at"] + int(queue.sla.first_contact_s * 1000)
        if due != wanted:
            self.error("sla_not_due", f"lead {lead_id} awaits first contact in queue {queue.name} "
                                      f"({queue.sla.first_contact_s:g} s) and should be due at {wanted}, but is due "
                                      f"at {due}, so a missed contact is not caught")

    def check_owners(self) -> None:
        for customer, owner in sorted(self.s.owners.items()):
            rep = owner.split("|", 1)[0]
            if rep not in self.s.profiles:
                self.error("owner_unknown_rep", f"customer {customer}'s last rep is {rep}, a rep with no profile")

    def check_closed_set(self) -> None:
        for lead_id, record in sorted(self.records.items()):
            if record["status"] == "closed" and lead_id not in self.s.closed:
                self.error("closed_not_dated", f"lead {lead_id} is closed but not in the closed set, so it is never "
                                               "forgotten after the retention")
        for lead_id in sorted(self.s.closed):
            record = self.records.get(lead_id)
            if record is None:
                self.error("dated_unknown_lead", f"closed set holds lead {lead_id}, whose record is gone")
            elif record["status"] != "closed":
                self.error("dated_not_closed", f"closed set holds lead {lead_id}, which is {record['status']}: "
                                               "it would be forgotten while still open")

    def check_members(self) -> None:
        profiles = {rep: p for rep, p in self.s.profiles.items() if p is not None}
        for queue in self.routing.queues:
            members = self.s.members.get(queue.name, set())
            for rep in sorted(members - set(self.s.profiles)):
                self.error("member_unknown_rep", f"queue {queue.name} lists rep {rep}, which has no profile")
            for rep, profile in sorted(profiles.items()):
                if queue.admits(profile) and rep not in members:
                    self.error("member_missing", f"rep {rep} qualifies for queue {queue.name} by its profile but is "
                                                 "not a member, so it never gets the queue's leads")
                elif not queue.admits(profile) and rep in members:
                    self.error("member_unqualified", f"rep {rep} is a member of queue {queue.name}, but its profile "
                                                     "does not qualify for it")

    def check_ready(self) -> None:
        """A rep that can take a queue's work now (a member, online, room in a bucket) is in that
        queue's ready index for the bucket, or no lead of the queue ever reaches it. The reverse is
        not an invariant: entries of reps that left, went offline or filled up are dropped by
        pick_rep when it meets them, and a step that moves a rep's last-assignment time leaves its
        entries in its other buckets behind with the old sort key (lib.lua's reserve), which the
        rep's next unindex then misses. pick_rep checks membership, presence, room and bucket
        before it chooses, so such entries are never acted on: warnings only."""
        buckets = ("*", *self.routing.channels)
        for queue in self.routing.queues:
            members = self.s.members.get(queue.name, set())
            for bucket in buckets:
                indexed: set[str] = set()
                for entry in self.s.ready.get((queue.name, bucket), []):
                    rep = entry.rsplit("|", 1)[-1]
                    indexed.add(rep)
                    why = self._stale_because(rep, bucket, members)
                    if why == "is off shift" and len(self.caps.get(rep, {})) == 1:
                        # Going off shift takes the rep out of every index in the step that records
                        # it; only a rep with several buckets may keep entries with an old sort key
                        # in its other buckets (reserve, above). Only pick_rep's own check keeps
                        # leads from this rep outside its hours.
                        self.error("off_shift_indexed", f"rep {rep} is off shift but in the ready index "
                                                        f"{queue.name}/{bucket}")
                    elif why:
                        self.warning("stale_ready_entry", f"ready index {queue.name}/{bucket} holds rep {rep}, which "
                                                          f"{why} (dropped when a decision meets it)")
                for rep in sorted(members - indexed):
                    if self.bucket_for(rep, bucket) == bucket and self.can_work(rep) and self.room(rep, bucket):
                        self.error("ready_missing", f"rep {rep} is online with room in bucket {bucket} but missing "
                                                    f"from the ready index of queue {queue.name}, so none of the "
                                                    "queue's leads reach it")

    def _stale_because(self, rep: str, bucket: str, members: set[str]) -> str:
        if rep not in self.s.profiles:
            return "has no profile"
        if rep not in members:
            return "is not a member of the queue"
        if self.bucket_for(rep, bucket) != bucket:
            return "does not spend that capacity bucket"
        if not self.present(rep):
            return "is not online"
        if not self.on_shift(rep):
            return "is off shift"
        if not self.room(rep, bucket):
            return "is full"
        return ""

    def check_shifts(self) -> None:
        """Shift states are "on" or "off", of reps with a profile (an off-shift rep in a ready index:
        check_ready). A boundary long past means no worker runs the shift timer."""
        for rep, state in sorted(self.s.shift.items()):
            if state not in ("on", "off"):
                self.error("unknown_shift", f"rep {rep} has shift state {state!r}; the states are on and off")
        for rep in sorted((set(self.s.shift) | set(self.s.shift_due)) - set(self.s.profiles)):
            self.error("shift_without_rep", f"rep {rep} has a shift state or boundary but no profile")
        for rep, at in sorted(self.s.shift_due.items()):
            if rep in self.s.profiles and at < self.s.now_ms - SHIFT_OVERDUE_MS:
                self.warning("shift_overdue", f"rep {rep}'s shift state was due to change {(self.s.now_ms - at) / 1000:.0f} s "
                                              "ago: is the shift timer running on any worker?")

    def check_turns(self) -> None:
        """A weighted queue's ready entry is sorted by the rep's pass as stored, and a rep that can
        take the queue's work is never behind the virtual time of the walks that meet it (a channel's
        index: that channel's, "vt|<channel>"; the '*' index: every channel's, whose highest is "vt"):
        one behind it would take a burst of leads to catch up (lib.lua's catch_up brings reps
        entering an index level)."""
        for queue in self.routing.queues:
            if not policy.strategy(queue.strategy).turn:
                continue
            state = self.s.state.get(queue.name, {})
            members = self.s.members.get(queue.name, set())
            for bucket in ("*", *self.routing.channels):
                vt = int(state.get("vt" if bucket == "*" else f"vt|{bucket}", 0))
                for entry in self.s.ready.get((queue.name, bucket), []):
                    pass_text, rep = entry.split("|", 1)
                    if self._stale_because(rep, bucket, members) or int(pass_text) != int(state.get(f"pass|{rep}", 0)):
                        continue
                    if int(pass_text) < vt:
                        self.error("turn_behind", f"rep {rep} waits in the ready index {queue.name}/{bucket} at pass "
                                                  f"{pass_text}, behind the queue's virtual time {vt}: it would take "
                                                  "every lead until it caught up")

    def check_outcomes(self) -> None:
        """close.lua keeps a rep's close outcomes for OUTCOME_DAYS days from `since` on: memory bounded."""
        since = {name.removesuffix("|since"): int(value) for name, value in self.s.outcomes.items()
                 if name.endswith("|since")}
        for name in sorted(self.s.outcomes):
            parts = name.rsplit("|", 2)
            if len(parts) != 3 or parts[2] not in ("closed", "won"):
                if not name.endswith("|since"):
                    self.error("unknown_outcome", f"outcomes field {name!r} is not one close.lua writes")
                continue
            rep, day = parts[0], int(parts[1])
            if rep not in since or not since[rep] <= day < since[rep] + OUTCOME_DAYS:
                self.error("outcomes_unpruned", f"outcomes of rep {rep} for day {day} lie outside its kept days "
                                                f"(from {since.get(rep, 'none')}, {OUTCOME_DAYS} days)")

    def check_stuck(self) -> None:
        """Contract 3: a lead waits only while no eligible rep has room. Leads wait when nobody can
        take them, and every step that makes room drains at once, so a waiting lead some rep could
        take now is stuck. The one rep exempt is the one a re-route moved the lead away from; a lead
        held for its customer's last rep waits for that rep alone."""
        takers: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for queue in self.routing.queues:
            members = self.s.members.get(queue.name, set())
            for channel in self.routing.channels:
                takers[queue.name, channel] = [
                    (rep, bucket) for rep in sorted(members)
                    if (bucket := self.bucket_for(rep, channel)) and self.can_work(rep)
                    and self.room(rep, bucket) and self.recent_enough(queue, rep)
                ]
        for lead_id, record in sorted(self.records.items()):
            if record["status"] != "queued":
                continue
            queue, channel = record.get("queue"), record["lead"].get("channel")
            skills, left = _lead_skills(record), _left_reps(record)
            # A held lead waits for one rep only: it is stuck only if that rep could take it.
            only = record.get("held_for")
            able = [(rep, bucket) for rep, bucket in takers.get((queue, channel), [])
                    if rep not in left and (only is None or rep == only)
                    and all((rep, skill) in self.s.skills for skill in skills)]
            if able:
                rep, bucket = able[0]
                others = f" (and {len(able) - 1} other reps)" if len(able) > 1 else ""
                self.error("stuck_lead", f"lead {lead_id} waits in {queue}/{channel} while rep {rep}{others} is "
                                         f"online with room in bucket {bucket} and has the skills it asks for")

    def check_breach_counts(self) -> None:
        for name, count in sorted(self.s.breach_counts.items()):
            queue, _, rep = name.partition("|")
            if not (queue and rep and count.isdigit() and int(count) > 0):
                self.error("unreadable_breach_count", f"breach counts field {name!r} = {count!r} is not "
                                                      "\"queue|rep\" -> a count above 0 as the breach step writes it")

    def check_rep_log(self) -> None:
        """Entries are "rep|time (µs, 16 digits)|event id|JSON" with the event's id in its JSON; every
        rep with entries is dated in `log:reps:oldest` no later than its oldest entry, or the
        retention step (forget_rep_log.lua), which visits only the reps dated before its cutoff,
        keeps them for ever."""
        first: dict[str, int] = {}
        counted: Counter[str] = Counter()
        for entry in self.s.rep_log:
            rep, micros, event_id, body = (entry.split("|", 3) + ["", "", ""])[:4]
            value = _json_object(body)
            if not (len(micros) == 16 and micros.isdigit() and value is not None and value.get("event_id") == event_id):
                self.error("unreadable_rep_log", f"rep log entry {entry[:80]!r} is not \"rep|time|event id|JSON\" "
                                                 "as the steps write it")
                continue
            counted[rep] += 1
            first.setdefault(rep, int(micros) // 1000)
        for rep in sorted(counted):
            if rep not in self.s.profiles:
                self.error("rep_log_unknown_rep", f"the rep log holds {counted[rep]} entries of rep {rep}, which has "
                                                  "no profile")
            dated = self.s.rep_log_oldest.get(rep)
            if dated is None:
                self.error("rep_log_undated", f"rep {rep} has {counted[rep]} entries in the rep log but no date in "
                                              "log:reps:oldest, so the retention never drops them")
            elif dated > first[rep]:
                self.error("rep_log_dated_late", f"rep {rep} is dated {dated:.0f} in log:reps:oldest, after its oldest "
                                                 f"rep log entry at {first[rep]}, so the retention keeps that entry "
                                                 "too long")
        for rep in sorted(set(self.s.rep_log_oldest) - set(counted)):
            self.warning("rep_log_empty_date", f"rep {rep} is dated in log:reps:oldest but has no rep log entries "
                                               "(the retention drops the date when it visits)")

    def check_notifications(self) -> None:
        """The newest notifications each name a rep with a profile and carry one assignment row or
        value (notify.py and the webhook relay read them so); the stream stays trimmed."""
        if self.s.notify_length > NOTIFY_KEPT + NOTIFY_SLACK:
            self.error("notify_untrimmed", f"the notifications stream holds {self.s.notify_length} entries, over the "
                                           f"about {NOTIFY_KEPT} it is trimmed to: its trimming has stopped")
        for entry_id, fields in self.s.notify_latest:
            kinds = [kind for kind in NOTIFY_KINDS if kind in fields]
            rep = fields.get("rep")
            if not rep or len(kinds) != 1 or _json_any(fields[kinds[0]]) is None:
                self.error("unreadable_notification", f"notification {entry_id} has fields {sorted(fields)}, not a "
                                                      "rep and one JSON row, moved or value: SSE clients and "
                                                      "webhooks cannot read it")
            elif rep not in self.s.profiles:
                self.error("notification_unknown_rep", f"notification {entry_id} is for rep {rep}, which has no profile")

    def check_stray_keys(self) -> None:
        for qk, count in sorted(self.s.stray.items(), key=lambda item: item[0].name):
            if qk.kind == "unknown":
                self.error("unknown_key", f"key {qk.name} is not one the dispatcher writes")
            elif qk.queue not in self.queues:
                self.error("stray_key", f"key {qk.name} holds {count} entries, but the routing in force has no "
                                        f"queue {qk.queue}")
            else:
                self.error("stray_key", f"key {qk.name} holds {count} entries, but the routing in force has no "
                                        f"channel {qk.where}")
        for name, reason in sorted(self.s.unreadable.items()):
            self.error("unreadable_key", f"key {name} cannot be read: {reason}")


def _buckets(capacity: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{bucket}: {value}" for bucket, value in sorted(capacity.items())) + "}"


def analyse(snapshot: Snapshot, routing: Routing, presence_ttl_ms: int) -> list[Drift]:
    return _Analysis(snapshot, routing, presence_ttl_ms).run()


def check(client: redis.Redis, keys: Keys, fallback: Routing, presence_ttl_ms: int) -> Report:
    """Every invariant of the workspace, from one snapshot. `fallback` is the routing the steps use
    while none is in force (see read_snapshot); `presence_ttl_ms` the workers' presence TTL."""
    snapshot, routing = read_snapshot(client, keys, fallback)
    drift = analyse(snapshot, routing, presence_ttl_ms)
    return Report(keys.workspace, snapshot.routing_version, len(snapshot.leads), len(snapshot.profiles),
                  len(routing.queues), tuple(drift))


def check_workspace(redis_url: str, workspace: str, fallback: Routing, presence_ttl_s: float) -> Report:
    """`check` over a connection of its own. Raises redis.ConnectionError (or TimeoutError) when
    Redis cannot be reached."""
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_connect_timeout=5, socket_timeout=30)
    try:
        return check(client, Keys(workspace), fallback, int(presence_ttl_s * 1000))
    finally:
        client.close()
